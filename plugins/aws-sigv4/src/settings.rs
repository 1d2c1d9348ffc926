//! The plugin's config, checked: the region and service a credential must be
//! scoped to, the time windows, what kinds of requests are accepted, and what
//! goes upstream.

use plugin_sdk::Config;
use plugin_sdk::consumers::{self, sigv4};
use plugin_sdk::units::parse_duration;
use serde::Deserialize;
use std::time::Duration;

/// AWS's limit on a presigned URL's `X-Amz-Expires`: seven days.
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 86_400);
/// The widest `max_skew` accepted.
const MAX_SKEW: Duration = Duration::from_secs(3_600);
/// How long `kv` keeps an entry at most: a remembered signature must not be
/// forgotten while it is still valid.
const KV_MAX_TTL: Duration = Duration::from_secs(86_400);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    region: String,
    service: String,
    #[serde(default = "default_max_skew")]
    max_skew: String,
    #[serde(default = "default_max_expires")]
    max_expires: String,
    #[serde(default = "yes")]
    allow_presigned: bool,
    #[serde(default)]
    allow_unsigned_payload: Option<bool>,
    #[serde(default = "yes")]
    hide_credentials: bool,
    #[serde(default = "yes")]
    consumer_headers: bool,
    #[serde(default = "consumers::default_header_prefix")]
    header_prefix: String,
    #[serde(default)]
    single_use: bool,
}

fn default_max_skew() -> String {
    "5m".into()
}

fn default_max_expires() -> String {
    "168h".into()
}

fn yes() -> bool {
    true
}

/// The checked settings.
#[derive(Debug)]
pub struct Settings {
    /// The region a credential must be scoped to.
    pub region: String,
    /// The service a credential must be scoped to (`s3` canonicalizes paths
    /// as S3 does).
    pub service: String,
    /// How far a request's time may be from now, either way.
    pub max_skew: Duration,
    /// The longest `X-Amz-Expires` of a presigned URL.
    pub max_expires: Duration,
    /// Accept presigned URLs (credentials in the query).
    pub allow_presigned: bool,
    /// Accept `x-amz-content-sha256: UNSIGNED-PAYLOAD` (by default for
    /// `s3` only: elsewhere a body left unsigned could be swapped by anyone
    /// replaying the request within its window).
    pub allow_unsigned_payload: bool,
    /// Remove the `Authorization` header or the `X-Amz-*` parameters.
    pub hide_credentials: bool,
    /// Send `<prefix>name`, `<prefix>groups` and `<prefix>plan` upstream.
    pub consumer_headers: bool,
    /// The prefix of the consumer headers.
    pub header_prefix: String,
    /// Refuse a signature seen before, while its time window is open.
    pub single_use: bool,
}

/// `config`, checked.
pub fn load(config: &Config) -> Result<Settings, String> {
    let raw: Raw = config.parse()?;
    if !sigv4::is_scope_part(&raw.region) || !sigv4::is_scope_part(&raw.service) {
        return Err(
            "aws-sigv4: region and service must be 1 to 64 of a-z, 0-9 and - (for example \"us-east-1\" and \"execute-api\")".into(),
        );
    }
    let max_skew = duration("max_skew", &raw.max_skew)?;
    if max_skew > MAX_SKEW {
        return Err("aws-sigv4: max_skew must be at most 1h".into());
    }
    let max_expires = duration("max_expires", &raw.max_expires)?;
    if max_expires > MAX_EXPIRES {
        return Err("aws-sigv4: max_expires must be at most 168h (7 days, AWS's limit)".into());
    }
    if raw.single_use && raw.allow_presigned && max_expires + max_skew > KV_MAX_TTL {
        return Err(
            "aws-sigv4: single_use remembers a signature for at most 24h (the kv store's limit), and a presigned URL may be used for max_expires plus max_skew; make those two at most 24h together, or set allow_presigned = false".into(),
        );
    }
    let header_prefix = consumers::checked_header_prefix("aws-sigv4", &raw.header_prefix)?;
    // The prefix's headers are removed from every request: one that would
    // take signed `x-amz-*` headers with them cannot be.
    if "x-amz-".starts_with(&header_prefix) {
        return Err(
            "aws-sigv4: header_prefix must not be the start of `x-amz-` (the headers under it are removed from every request)"
                .into(),
        );
    }
    let allow_unsigned_payload = raw.allow_unsigned_payload.unwrap_or(raw.service == "s3");
    Ok(Settings {
        region: raw.region,
        service: raw.service,
        max_skew,
        max_expires,
        allow_presigned: raw.allow_presigned,
        allow_unsigned_payload,
        hide_credentials: raw.hide_credentials,
        consumer_headers: raw.consumer_headers,
        header_prefix,
        single_use: raw.single_use,
    })
}

/// A positive duration setting.
fn duration(key: &str, text: &str) -> Result<Duration, String> {
    let value = parse_duration(text).map_err(|e| format!("aws-sigv4: {key}: {e}"))?;
    if value < Duration::from_secs(1) {
        return Err(format!("aws-sigv4: {key} must be at least 1s"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_json(json: &str) -> Result<Settings, String> {
        load(&Config::from_json(json))
    }

    #[test]
    fn defaults_and_refusals() {
        let settings = load_json(r#"{"region": "us-east-1", "service": "execute-api"}"#);
        let settings = settings.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.max_skew, Duration::from_secs(300));
        assert_eq!(settings.max_expires, MAX_EXPIRES);
        assert!(settings.allow_presigned && settings.hide_credentials && !settings.single_use);
        assert!(!settings.allow_unsigned_payload);
        assert!(load_json(r#"{"region": "us-east-1"}"#).is_err());
        assert!(load_json(r#"{"region": "US/East", "service": "iam"}"#).is_err());
        assert!(
            load_json(r#"{"region": "us-east-1", "service": "iam", "max_skew": "2h"}"#).is_err()
        );
        assert!(
            load_json(r#"{"region": "us-east-1", "service": "iam", "max_skew": "0s"}"#).is_err()
        );
        assert!(
            load_json(r#"{"region": "us-east-1", "service": "iam", "max_expires": "169h"}"#)
                .is_err()
        );
        assert!(
            load_json(r#"{"region": "us-east-1", "service": "iam", "single_use": true}"#).is_err()
        );
        assert!(load_json(r#"{"region": "us-east-1", "service": "iam", "single_use": true, "max_expires": "1h"}"#).is_ok());
        assert!(load_json(r#"{"region": "us-east-1", "service": "iam", "single_use": true, "max_expires": "24h"}"#).is_err());
        assert!(
            load_json(r#"{"region": "us-east-1", "service": "iam", "header_prefix": "x-"}"#)
                .is_err()
        );
        let s3 = load_json(r#"{"region": "us-east-1", "service": "s3"}"#);
        assert!(s3.is_ok_and(|s| s.allow_unsigned_payload));
        assert!(load_json(r#"{"region": "us-east-1", "service": "iam", "realm": "x"}"#).is_err());
    }
}
