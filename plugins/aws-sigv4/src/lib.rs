//! The built-in `aws-sigv4` plugin: requests signed with AWS Signature
//! Version 4, as AWS's SDKs and CLI sign them, checked against the access
//! keys of `[[consumers]]` (`access_keys`), as Amazon API Gateway's IAM
//! authorization checks them.
//!
//! Two forms are read: the `Authorization: AWS4-HMAC-SHA256 Credential=...,
//! SignedHeaders=..., Signature=...` header, and presigned URLs (the
//! `X-Amz-*` query parameters, when `allow_presigned`; their payload hash is
//! `UNSIGNED-PAYLOAD` for S3 and the body's SHA-256 for other services, as
//! botocore signs them). A request with
//! both, with the header twice or a parameter twice, is refused. The plugin
//! rebuilds the canonical request from what it received (the method, the
//! path, the query, the signed headers and the body's SHA-256) and the
//! string to sign, and asks the gateway (`consumers::verify_sigv4`), which
//! holds the secrets, whose key signed it. A request whose time is more than
//! `max_skew` from now, or a presigned URL past its `X-Amz-Expires`, is
//! refused, so that a captured request cannot be replayed later; with
//! `single_use` a signature is also remembered in `kv` until its window
//! closes, and refused the second time.
//!
//! Outcomes: no credentials, `401`; malformed ones, `400`; a signature that
//! does not match (or an unknown access key id: the two are not told
//! apart), a credential scoped to another region, service or day, or a time
//! out of the window, `403`. On success the consumer is identified as
//! key-auth does, the credentials are removed (`hide_credentials`), and
//! `x-consumer-*` headers are set; consumer headers the client sent are
//! removed whatever the outcome.

mod canonical;
mod credential;
mod settings;

use credential::{ALGORITHM, Credential, Signed};
use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::crypto::{DigestAlgorithm, digest};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, clock, kv, log};
use settings::Settings;
use std::time::Duration;

pub use plugin_sdk::consumers::{CONTEXT_AUTH, CONTEXT_CONSUMER, CONTEXT_GROUPS, CONTEXT_PLAN};

/// The payload hash of an S3 presigned URL, or of a request that opts out.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The query parameters of a presigned URL.
const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct AwsSigV4 {
    settings: Settings,
}

/// Why a request is refused: the status and the reason the client reads.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// A request's claim: its signature, its time and, presigned, how long it
/// is valid.
#[derive(Debug)]
struct Claim {
    signed: Signed,
    /// `YYYYMMDDTHHMMSSZ`, as signed.
    amz_date: String,
    /// The same, in seconds since the Unix epoch.
    time: u64,
    /// `X-Amz-Expires` of a presigned URL.
    expires: Option<u64>,
}

impl Plugin for AwsSigV4 {
    const NAME: &'static str = "aws-sigv4";

    fn needs(&self) -> Needs {
        Needs::REQUEST | Needs::REQUEST_BODY
    }

    fn init(config: Config) -> Result<Self, String> {
        Ok(AwsSigV4 {
            settings: settings::load(&config)?,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        self.handle(req, ctx, clock::now_millis() / 1000)
    }
}

impl AwsSigV4 {
    /// The request hook at `now` (seconds since the Unix epoch).
    fn handle(&self, req: &mut Request, ctx: &mut Context, now: u64) -> Action {
        req.headers_mut()
            .remove_prefixed(&self.settings.header_prefix);
        match self.check(req, now) {
            Ok((consumer, claim)) => {
                self.admit(req, ctx, &consumer, &claim);
                Action::Continue
            }
            Err(refusal) => {
                if refusal.status != 401 {
                    log::info(&format!(
                        "aws-sigv4: {} on route `{}` from {}",
                        refusal.reason,
                        req.route(),
                        req.client_addr()
                    ));
                }
                let response = match refusal.status {
                    400 | 503 => Response::error(refusal.status, &refusal.reason, req),
                    status => Response::denied(status, &refusal.reason, req),
                };
                Action::Respond(response)
            }
        }
    }

    /// The consumer whose key signed `req`, and the claim checked, at `now`.
    fn check(&self, req: &Request, now: u64) -> Result<(Consumer, Claim), Refusal> {
        let claim = self.claim(req)?;
        // `+` reads as a space to some upstreams and as a plus to others:
        // whichever the signature covered, the other could be swapped in.
        if req.query().contains('+') {
            return Err(refuse(
                400,
                "a + in the query is ambiguous: encode a space as %20 and a plus as %2B",
            ));
        }
        self.check_scope(&claim)?;
        self.check_time(&claim, now)?;
        let canonical = self.canonical_request(req, &claim)?;
        let Credential {
            access_key_id,
            date,
            region,
            service,
        } = &claim.signed.credential;
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{date}/{region}/{service}/aws4_request\n{}",
            claim.amz_date,
            sha256_hex(canonical.as_bytes())
        );
        let signature = &claim.signed.signature;
        let consumer = consumers::verify_sigv4(
            access_key_id,
            date,
            region,
            service,
            &string_to_sign,
            signature,
        )
        .ok_or_else(|| refuse(403, "signature does not match"))?;
        if self.settings.single_use {
            self.remember(&claim, now)?;
        }
        Ok((consumer, claim))
    }

    /// The request's signature, from the one place that holds one.
    fn claim(&self, req: &Request) -> Result<Claim, Refusal> {
        let header = req
            .headers()
            .single("authorization")
            .map_err(|_| refuse(400, "Authorization given more than once"))?;
        let presigned = req.query_params().iter().any(|(name, _)| {
            ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"].contains(&name.as_str())
        });
        match (header, presigned) {
            (Some(_), true) => Err(refuse(
                400,
                "credentials in both the Authorization header and the query",
            )),
            (Some(value), false) => self.header_claim(req, value),
            (None, true) if self.settings.allow_presigned => self.query_claim(req),
            (None, true) => Err(refuse(401, "presigned URLs are not accepted")),
            (None, false) if req.headers().contains("authorization") => {
                Err(refuse(400, "the Authorization header is not text"))
            }
            (None, false) => Err(refuse(401, "missing AWS Signature Version 4 credentials")),
        }
    }

    /// The claim of an `Authorization` header, timed by `X-Amz-Date` (or
    /// else `Date`), which must be signed.
    fn header_claim(&self, req: &Request, value: &str) -> Result<Claim, Refusal> {
        if !value.starts_with(&format!("{ALGORITHM} ")) {
            return Err(refuse(
                401,
                "the Authorization header is not AWS4-HMAC-SHA256",
            ));
        }
        let signed = credential::parse_authorization(value).map_err(|e| refuse(400, e))?;
        let headers = req.headers();
        let twice = |name: &str| refuse(400, format!("{name} given more than once"));
        let (amz_date, date_header) = match headers
            .single("x-amz-date")
            .map_err(|_| twice("X-Amz-Date"))?
        {
            Some(amz) => (amz.to_string(), "x-amz-date"),
            None => match headers.single("date").map_err(|_| twice("Date"))? {
                Some(date) => (
                    credential::http_date_to_amz(date)
                        .ok_or_else(|| refuse(400, "Date is not an HTTP date"))?,
                    "date",
                ),
                None => return Err(refuse(400, "the request has no X-Amz-Date or Date")),
            },
        };
        if !signed.signed_headers.iter().any(|h| h == date_header) {
            return Err(refuse(
                400,
                format!("the {date_header} header must be signed"),
            ));
        }
        let time = credential::amz_date_seconds(&amz_date)
            .ok_or_else(|| refuse(400, "X-Amz-Date must be YYYYMMDDTHHMMSSZ"))?;
        Ok(Claim {
            signed,
            amz_date,
            time,
            expires: None,
        })
    }

    /// The claim of a presigned URL's `X-Amz-*` parameters.
    fn query_claim(&self, req: &Request) -> Result<Claim, Refusal> {
        let param = |name: &str| -> Result<String, Refusal> {
            req.single_query_param(name)
                .map_err(|_| refuse(400, format!("{name} given more than once")))?
                .ok_or_else(|| refuse(400, format!("the presigned URL has no {name}")))
        };
        if param("X-Amz-Algorithm")? != ALGORITHM {
            return Err(refuse(400, "X-Amz-Algorithm must be AWS4-HMAC-SHA256"));
        }
        let bad = |e: String| refuse(400, e);
        let signed = Signed {
            credential: credential::parse_credential(&param("X-Amz-Credential")?).map_err(bad)?,
            signed_headers: credential::parse_signed_headers(&param("X-Amz-SignedHeaders")?)
                .map_err(bad)?,
            signature: credential::check_signature(&param("X-Amz-Signature")?).map_err(bad)?,
        };
        let amz_date = param("X-Amz-Date")?;
        let time = credential::amz_date_seconds(&amz_date)
            .ok_or_else(|| refuse(400, "X-Amz-Date must be YYYYMMDDTHHMMSSZ"))?;
        let max = self.settings.max_expires.as_secs();
        let expires = param("X-Amz-Expires")?
            .parse::<u64>()
            .ok()
            .filter(|e| (1..=max).contains(e))
            .ok_or_else(|| refuse(400, format!("X-Amz-Expires must be 1 to {max} seconds")))?;
        Ok(Claim {
            signed,
            amz_date,
            time,
            expires: Some(expires),
        })
    }

    /// The credential's scope: the request's day, and the configured region
    /// and service.
    fn check_scope(&self, claim: &Claim) -> Result<(), Refusal> {
        let credential = &claim.signed.credential;
        if !claim.amz_date.starts_with(&credential.date) {
            return Err(refuse(
                403,
                "the credential's date is not the request's day",
            ));
        }
        if credential.region != self.settings.region {
            return Err(refuse(403, "the credential is scoped to another region"));
        }
        if credential.service != self.settings.service {
            return Err(refuse(403, "the credential is scoped to another service"));
        }
        Ok(())
    }

    /// The request's time against `now` (seconds): within `max_skew`, or
    /// for a presigned URL, not in the future beyond it and not expired.
    fn check_time(&self, claim: &Claim, now: u64) -> Result<(), Refusal> {
        let skew = self.settings.max_skew.as_secs();
        match claim.expires {
            None if now.abs_diff(claim.time) > skew => Err(refuse(
                403,
                "the request time is too far from the gateway's time",
            )),
            Some(_) if claim.time > now.saturating_add(skew) => {
                Err(refuse(403, "the presigned URL is dated in the future"))
            }
            Some(expires) if now > claim.time.saturating_add(expires) => {
                Err(refuse(403, "the presigned URL has expired"))
            }
            _ => Ok(()),
        }
    }

    /// The canonical request of `req` as `claim` signed it. A path with
    /// empty, `.` or `..` segments is refused (other than for `s3`): AWS
    /// signs it normalized, but the route was chosen on it as it came, and
    /// an upstream reading the normalized one could be sent past the
    /// route's guards (`/reports/../admin`).
    fn canonical_request(&self, req: &Request, claim: &Claim) -> Result<String, Refusal> {
        let s3 = self.settings.service == "s3";
        if !s3 && canonical::normalize_path(req.path()) != req.path() {
            return Err(refuse(
                400,
                "the path has empty, `.` or `..` segments: send it normalized",
            ));
        }
        let uri = canonical::canonical_uri(req.path(), s3);
        let skip = claim.expires.map(|_| "X-Amz-Signature");
        let query = canonical::canonical_query(req.query(), skip);
        let presigned = claim.expires.is_some();
        let headers = canonical_headers(req, &claim.signed.signed_headers, presigned)?;
        let payload = self.payload_hash(req, claim)?;
        Ok(format!(
            "{}\n{uri}\n{query}\n{headers}\n{}\n{payload}",
            req.method(),
            claim.signed.signed_headers.join(";")
        ))
    }

    /// The payload hash signed: `x-amz-content-sha256` when sent (a hex
    /// hash must be the body's; `UNSIGNED-PAYLOAD` when allowed; streaming
    /// forms are refused), else `UNSIGNED-PAYLOAD` for an S3 presigned URL
    /// and the body's SHA-256 for anything else.
    fn payload_hash(&self, req: &Request, claim: &Claim) -> Result<String, Refusal> {
        let declared = req
            .headers()
            .single("x-amz-content-sha256")
            .map_err(|_| refuse(400, "x-amz-content-sha256 given more than once"))?;
        let body = req.body().unwrap_or_default();
        match declared {
            Some(UNSIGNED_PAYLOAD) if self.settings.allow_unsigned_payload => {
                Ok(UNSIGNED_PAYLOAD.into())
            }
            Some(UNSIGNED_PAYLOAD) => Err(refuse(403, "unsigned payloads are not accepted")),
            Some(value) if value.starts_with("STREAMING-") => Err(refuse(
                400,
                "streaming (chunk-signed) payloads are not supported",
            )),
            Some(value) => {
                credential::check_signature(value).map_err(|_| {
                    refuse(400, "x-amz-content-sha256 must be 64 lower-case hex digits")
                })?;
                if sha256_hex(body) != value {
                    return Err(refuse(400, "x-amz-content-sha256 does not match the body"));
                }
                Ok(value.into())
            }
            // S3's presigned URLs leave the body out; other services' sign
            // it, as botocore's `SigV4QueryAuth` does.
            None if claim.expires.is_some() && self.settings.service == "s3" => {
                if !body.is_empty() && !self.settings.allow_unsigned_payload {
                    return Err(refuse(403, "unsigned payloads are not accepted"));
                }
                Ok(UNSIGNED_PAYLOAD.into())
            }
            None => Ok(sha256_hex(body)),
        }
    }

    /// With `single_use`: refuses a signature seen before, else remembers
    /// it until its window closes.
    fn remember(&self, claim: &Claim, now: u64) -> Result<(), Refusal> {
        let key = format!("used:{}", claim.signed.signature);
        if kv::get(&key).is_some() {
            return Err(refuse(403, "this signature was already used"));
        }
        let end = match claim.expires {
            Some(expires) => claim.time.saturating_add(expires),
            None => claim.time.saturating_add(self.settings.max_skew.as_secs()),
        };
        let ttl = Duration::from_secs(end.saturating_sub(now).saturating_add(1));
        kv::set(&key, b"1", ttl).map_err(|e| {
            log::warn(&format!("aws-sigv4: cannot remember a used signature: {e}"));
            refuse(503, "replay protection unavailable")
        })
    }

    fn admit(&self, req: &mut Request, ctx: &mut Context, consumer: &Consumer, claim: &Claim) {
        consumer.identify(ctx, "aws-sigv4");
        if self.settings.hide_credentials {
            req.headers_mut().remove_alike("authorization");
            if claim.expires.is_some() {
                let kept = without_presign_params(req.query());
                req.set_query(kept);
            }
        }
        if self.settings.consumer_headers {
            consumer.set_headers(req.headers_mut(), &self.settings.header_prefix);
        }
    }
}

/// The canonical headers of `names` (each line `name:value\n`): every one
/// present (`host` may be the request's authority, over HTTP/2), in text,
/// under no other spelling, and not named by `Connection` (which would
/// remove it on the way upstream); `host` among them, and every header the
/// upstream could act on unsigned: `x-amz-*` (`x-amz-content-sha256`
/// included) and, for an `Authorization` signature over a body,
/// `content-type`.
fn canonical_headers(req: &Request, names: &[String], presigned: bool) -> Result<String, Refusal> {
    let signed = |name: &str| names.iter().any(|n| n == name);
    if !signed("host") {
        return Err(refuse(400, "the host header must be signed"));
    }
    for (name, _) in req.headers().iter() {
        let name = name.to_ascii_lowercase();
        let must = name.starts_with("x-amz-")
            || (name == "content-type" && !presigned && !req.body().unwrap_or_default().is_empty());
        if must && !signed(&name) {
            return Err(refuse(400, format!("the {name} header must be signed")));
        }
    }
    for value in req.headers().get_all("connection") {
        if value
            .split(',')
            .any(|token| signed(&token.trim().to_ascii_lowercase()))
        {
            return Err(refuse(400, "a signed header is named in Connection"));
        }
    }
    let mut out = String::new();
    for name in names {
        let folded = name.replace('_', "-");
        let aliased = req.headers().iter().any(|(other, _)| {
            !other.eq_ignore_ascii_case(name)
                && other.to_ascii_lowercase().replace('_', "-") == folded
        });
        if aliased {
            return Err(refuse(
                400,
                format!("signed header `{name}` given under another spelling"),
            ));
        }
        let values: Vec<&str> = req.headers().get_all(name).collect();
        if values.len() != req.headers().count(name) {
            return Err(refuse(400, format!("signed header `{name}` is not text")));
        }
        out.push_str(name);
        out.push(':');
        match values.as_slice() {
            [] if name == "host" && !req.authority().is_empty() => {
                canonical::header_value(req.authority(), &mut out);
            }
            [] => return Err(refuse(400, format!("signed header `{name}` is missing"))),
            values => {
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical::header_value(value, &mut out);
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// `query` without the presigned URL's parameters, the others as they came.
fn without_presign_params(query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|piece| {
            let name = piece.split_once('=').map_or(*piece, |(name, _)| name);
            let name = canonical::decode(name);
            !piece.is_empty() && !PRESIGN_PARAMS.iter().any(|p| p.as_bytes() == name)
        })
        .collect();
    kept.join("&")
}

/// Lower-case hex of the SHA-256 of `data`, computed by the host.
fn sha256_hex(data: &[u8]) -> String {
    canonical::hex(&digest(DigestAlgorithm::Sha256, data))
}

plugin_sdk::export!(AwsSigV4);

#[cfg(test)]
mod tests;
