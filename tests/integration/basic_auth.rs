//! `basic-auth` through the real binary: each kind of stored hash, unknown
//! users, the challenge, and a verified credential remembered so that its
//! hash is computed once (read from `gateway_password_checks_total`).

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Upstream, get, get_with, metric, python};
use base64::Engine as _;
use serde_json::json;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// `gateway hash-password --algorithm ALGORITHM`, as an operator would run it.
fn hash_password(password: &str, algorithm: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["hash-password", "--algorithm", algorithm])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn gateway hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let output = child.wait_with_output().expect("hash-password output");
    assert!(output.status.success(), "hash-password failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Hashes made by other systems' libraries, so that the gateway reads what
/// it did not write: argon2-cffi's defaults (argon2id, 64 MiB, 3 passes, 4
/// lanes), pyca's bcrypt, and Django's PBKDF2 form made with Python's own
/// PBKDF2 as Django makes it. One line of JSON per password: `[kind, hash]`.
fn foreign_hashes(password: &str) -> Vec<(String, String)> {
    let script = "import argon2, base64, bcrypt, hashlib, json, sys\n\
        p = sys.stdin.read()\n\
        salt = 'pepperedsalt'; n = 100000\n\
        dj = base64.b64encode(hashlib.pbkdf2_hmac('sha256', p.encode(), salt.encode(), n)).decode()\n\
        print(json.dumps([\n\
          ['argon2-cffi', argon2.PasswordHasher().hash(p)],\n\
          ['pyca-bcrypt', bcrypt.hashpw(p.encode(), bcrypt.gensalt(10)).decode()],\n\
          ['django', f'pbkdf2_sha256${n}${salt}${dj}'],\n\
        ]))";
    let out = python(script, password.as_bytes());
    serde_json::from_slice(&out).expect("hashes as JSON")
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn call(gw: &Gateway, authorization: Option<&str>) -> crate::support::Reply {
    let headers: Vec<(&str, &str)> = authorization
        .map(|v| ("authorization", v))
        .into_iter()
        .collect();
    get_with(&gw.url("/basic"), &headers).await
}

async fn checks(gw: &Gateway, outcome: &str) -> f64 {
    let text = get(&gw.admin_url("/metrics")).await.body;
    metric(
        &text,
        &format!("gateway_password_checks_total{{outcome=\"{outcome}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_reads_every_hash_kind_and_pays_each_hash_once() {
    let upstream = Upstream::start("api").await;
    let foreign = foreign_hashes("dave-password-4");
    let users = [
        ("alice", hash_password("wonderland-secret-1", "argon2id")),
        ("bob", hash_password("bob-password-2", "bcrypt")),
        ("carol", hash_password("carol-password-3", "pbkdf2-sha256")),
        ("dave", foreign[0].1.clone()),
        ("frank", foreign[1].1.clone()),
        ("grace", foreign[2].1.clone()),
    ];
    assert!(users[0].1.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(users[1].1.starts_with("$2b$12$"));
    assert!(users[2].1.starts_with("$pbkdf2-sha256$i=600000,l=32$"));
    assert!(users[3].1.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"));
    assert!(users[4].1.starts_with("$2b$10$"));
    assert!(users[5].1.starts_with("pbkdf2_sha256$100000$"));
    let mut config = Config::new().admin().upstream("api", &upstream).route(
        Route::new("basic", "/basic")
            .upstream("api")
            .plugin(Plugin::new("basic-auth").config(json!({ "realm": "zoo" }))),
    );
    for (name, hash) in &users {
        config = config.consumer(json!({
            "name": name,
            "groups": ["staff"],
            "passwords": [{ "hash": hash }],
        }));
    }
    let gw = config
        .consumer(json!({
            "name": "erin-consumer",
            "passwords": [{ "username": "erin", "plaintext": "erin-password-5" }],
        }))
        .start();

    for (user, password, consumer) in [
        ("alice", "wonderland-secret-1", "alice"),
        ("bob", "bob-password-2", "bob"),
        ("carol", "carol-password-3", "carol"),
        ("dave", "dave-password-4", "dave"),
        ("frank", "dave-password-4", "frank"),
        ("grace", "dave-password-4", "grace"),
        ("erin", "erin-password-5", "erin-consumer"),
    ] {
        let reply = call(&gw, Some(&basic(user, password))).await;
        assert_eq!(reply.status, 200, "{user}: {}", reply.body);
        let seen = &reply.json()["headers"];
        assert_eq!(seen["x-consumer-name"], consumer);
        assert!(
            seen.get("authorization").is_none(),
            "the password went upstream"
        );

        let wrong = call(&gw, Some(&basic(user, &format!("{password}x")))).await;
        assert_eq!(wrong.status, 401, "{user} with a wrong password");
        assert_eq!(
            wrong.header("www-authenticate"),
            Some("Basic realm=\"zoo\", charset=\"UTF-8\"")
        );
    }
    // Seven passwords verified (six hashed, one in clear), seven wrong
    // ones checked.
    assert_eq!(checks(&gw, "valid").await, 7.0);
    assert_eq!(checks(&gw, "invalid").await, 7.0);

    // A valid credential again: remembered, no hash computed.
    for _ in 0..5 {
        let reply = call(&gw, Some(&basic("alice", "wonderland-secret-1"))).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(checks(&gw, "valid").await, 7.0);
    assert_eq!(checks(&gw, "remembered").await, 5.0);

    // An unknown user is checked against a decoy hash, as a known one would
    // be, and refused alike.
    let unknown = call(&gw, Some(&basic("mallory", "wonderland-secret-1"))).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["error"], "unauthorized: invalid credentials");
    assert_eq!(checks(&gw, "invalid").await, 8.0);

    // No credentials, another scheme: the challenge, nothing checked.
    assert_eq!(call(&gw, None).await.status, 401);
    assert_eq!(call(&gw, Some("Bearer abc")).await.status, 401);
    assert_eq!(checks(&gw, "invalid").await, 8.0);
    assert_eq!(upstream.hits(), 12);
}
