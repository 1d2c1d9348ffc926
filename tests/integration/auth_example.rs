//! `examples/auth` run for real, on a free port instead of 8083: basic auth
//! with alice's password, a SigV4 request signed by botocore, and the
//! external authorizer the example serves itself.

use crate::support::{Gateway, get_with, python, run_example};
use base64::Engine as _;

/// The example on a free port.
fn example() -> (Gateway, tempfile::TempDir) {
    run_example("auth", 8083, &["secrets/aws-secret-access-key"])
}

async fn get(gw: &Gateway, path: &str, authorization: Option<&str>) -> crate::support::Reply {
    let headers: Vec<(&str, &str)> = authorization
        .map(|v| ("authorization", v))
        .into_iter()
        .collect();
    get_with(&gw.url(path), &headers).await
}

/// The headers botocore's `SigV4Auth` adds to a GET of `url`, signed with
/// the example's access key for us-east-1 and execute-api.
fn signed_by_botocore(url: &str) -> Vec<(String, String)> {
    let script = "import botocore.auth, botocore.awsrequest, botocore.credentials, json, sys\n\
        creds = botocore.credentials.Credentials('AKIDEXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY')\n\
        req = botocore.awsrequest.AWSRequest(method='GET', url=sys.stdin.read())\n\
        botocore.auth.SigV4Auth(creds, 'execute-api', 'us-east-1').add_auth(req)\n\
        print(json.dumps(list(req.headers.items())))";
    let out = python(script, url.as_bytes());
    serde_json::from_slice(&out).expect("headers as JSON")
}

fn basic(user_and_password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(user_and_password);
    format!("Basic {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_signs_in_with_basic_auth_and_the_authorizer_knows_one_token() {
    let (gw, _dir) = example();

    let reply = get(&gw, "/basic", Some(&basic("alice:wonderland-secret-1"))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["authenticated"], "basic-auth");
    let wrong = get(&gw, "/basic", Some(&basic("alice:wonderland-secret-2"))).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header("www-authenticate"),
        Some("Basic realm=\"auth-example\", charset=\"UTF-8\"")
    );

    let reply = get(&gw, "/ext", Some("Bearer demo-token-123")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["authenticated"], "ext-auth");
    assert_eq!(get(&gw, "/ext", Some("Bearer guess")).await.status, 403);
    assert_eq!(get(&gw, "/ext", None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_by_botocore_with_akidexample_is_admitted() {
    let (gw, _dir) = example();
    let url = gw.url("/signed");
    let signed = signed_by_botocore(&url);
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let reply = get_with(&url, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["authenticated"], "aws-sigv4");
    assert_eq!(get(&gw, "/signed", None).await.status, 401);
}
