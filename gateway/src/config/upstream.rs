//! `[upstreams.NAME]` checked into [`UpstreamSettings`]: the targets and
//! weights parsed, the numbers in range, the `ca_file` read and its
//! certificates parsed, the HTTP/2 settings only with HTTP/2. Every error of
//! an upstream is reported, each at its key.

use super::problems::Problems;
use super::shape::{
    BalanceKind, HealthCheckConfig, OutlierDetectionConfig, UpstreamConfig, UpstreamProtocol,
};
use super::source::{ConfigError, Source};
use crate::proxy::upstream::settings::{
    Balance, ClientIdentity, DEFAULT_HTTP2_KEEPALIVE, DEFAULT_HTTP2_MAX_STREAMS, HashOn,
    HealthCheck, MAX_HTTP2_STREAMS, MAX_RETRIES, OutlierDetection, TargetSpec, UpstreamSettings,
    ca_roots, check_weights,
};
use http::uri::PathAndQuery;
use rustls::pki_types::ServerName;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// Upstream `name`'s settings, or every error in them.
pub fn upstream_settings(
    source: &Source,
    name: &str,
    config: &Spanned<UpstreamConfig>,
) -> Result<UpstreamSettings, ConfigError> {
    let settings = config.get_ref();
    let mut problems = Problems::new(source);
    let mut at = |span: Range<usize>, message: String| {
        problems.at(span, format!("upstream `{name}`: {message}"));
    };
    let http2 = *settings.protocol.get_ref() == UpstreamProtocol::Http2;
    check_numbers(&mut at, settings);
    let health_check = settings
        .health_check
        .as_ref()
        .and_then(|check| health_check(&mut at, check.get_ref()));
    let ca_pem = settings
        .ca_file
        .as_ref()
        .and_then(|file| ca_file(source, &mut at, file));
    let tls_server_name = settings
        .tls_server_name
        .as_ref()
        .and_then(|name| server_name(&mut at, name));
    let client_identity = client_identity(source, &mut at, config);
    let keepalive = settings
        .http2_keepalive
        .as_ref()
        .map(|k| Spanned::new(k.span(), k.get_ref().0));
    let http2_keepalive = http2_only(
        &mut at,
        "http2_keepalive",
        keepalive.as_ref(),
        http2,
        (
            DEFAULT_HTTP2_KEEPALIVE,
            |d: &Duration| !d.is_zero(),
            "more than zero",
        ),
    );
    let max_streams_range = format!("between 1 and {MAX_HTTP2_STREAMS}");
    let http2_max_streams = http2_only(
        &mut at,
        "http2_max_streams",
        settings.http2_max_streams.as_ref(),
        http2,
        (
            DEFAULT_HTTP2_MAX_STREAMS,
            |m: &usize| (1..=MAX_HTTP2_STREAMS).contains(m),
            &max_streams_range,
        ),
    );
    let outlier_detection = settings
        .outlier_detection
        .as_ref()
        .and_then(|detection| outlier_detection(&mut at, detection.get_ref()));
    let balance = balance(&mut at, settings);
    let targets = targets(&mut problems, name, config);
    problems.finish(UpstreamSettings {
        targets,
        connect_timeout: settings.connect_timeout.0,
        timeout: settings.timeout.0,
        idle_timeout: settings.idle_timeout.0,
        max_idle_connections: settings.max_idle_connections,
        max_fails: settings.max_fails,
        fail_timeout: settings.fail_timeout.get_ref().0,
        retries: *settings.retries.get_ref(),
        ca_pem,
        tls_server_name,
        client_identity,
        health_check,
        http2,
        http2_keepalive,
        http2_max_streams,
        max_requests: settings.max_requests.as_ref().map(|m| *m.get_ref()),
        outlier_detection,
        balance,
    })
}

/// `balance` and `hash_on`, together; round robin with their errors recorded.
fn balance(at: &mut impl FnMut(Range<usize>, String), settings: &UpstreamConfig) -> Balance {
    match (settings.balance.get_ref(), &settings.hash_on) {
        (BalanceKind::Hash, Some(on)) => match HashOn::parse(on.get_ref()) {
            Ok(on) => return Balance::Hash(on),
            Err(message) => at(on.span(), message),
        },
        (BalanceKind::Hash, None) => at(
            settings.balance.span(),
            "balance = \"hash\" needs hash_on: `header:NAME`, `cookie:NAME` or `ip`".to_string(),
        ),
        (_, Some(on)) => at(on.span(), "hash_on needs balance = \"hash\"".to_string()),
        (BalanceKind::LeastRequest, None) => return Balance::LeastRequest,
        (BalanceKind::RoundRobin, None) => {}
    }
    Balance::RoundRobin
}

/// `[upstreams.NAME.outlier_detection]`, or `None` with its errors recorded.
fn outlier_detection(
    at: &mut impl FnMut(Range<usize>, String),
    detection: &OutlierDetectionConfig,
) -> Option<OutlierDetection> {
    let mut ok = true;
    let mut fault = |span: Range<usize>, message: &str| {
        ok = false;
        at(span, format!("outlier_detection: {message}"));
    };
    let errors = &detection.consecutive_errors;
    if *errors.get_ref() == 0 {
        fault(errors.span(), "consecutive_errors must be at least 1");
    }
    let (base, max) = (&detection.base_ejection_time, &detection.max_ejection_time);
    if base.get_ref().0.is_zero() {
        fault(base.span(), "base_ejection_time must be more than zero");
    }
    if max.get_ref().0 < base.get_ref().0 {
        fault(
            max.span(),
            "max_ejection_time must be at least base_ejection_time",
        );
    }
    let percent = &detection.max_ejection_percent;
    if *percent.get_ref() > 100 {
        fault(percent.span(), "max_ejection_percent is at most 100");
    }
    ok.then(|| OutlierDetection {
        consecutive_errors: *errors.get_ref(),
        base_ejection_time: base.get_ref().0,
        max_ejection_time: max.get_ref().0,
        max_ejection_percent: *percent.get_ref(),
    })
}

/// The targets with their weights, each error recorded.
fn targets(
    problems: &mut Problems<'_>,
    name: &str,
    config: &Spanned<UpstreamConfig>,
) -> Vec<TargetSpec> {
    let settings = config.get_ref();
    if settings.targets.is_empty() {
        problems.at(
            config.span(),
            format!("upstream `{name}` has no targets: add targets = [\"host:port\"]"),
        );
        return Vec::new();
    }
    let weights = match &settings.weights {
        None => vec![1; settings.targets.len()],
        Some(weights) => {
            if let Err(message) = check_weights(weights.get_ref(), settings.targets.len()) {
                problems.at(weights.span(), format!("upstream `{name}`: {message}"));
            }
            weights.get_ref().clone()
        }
    };
    settings
        .targets
        .iter()
        .zip(weights)
        .filter_map(|(target, weight)| {
            TargetSpec::parse(target.get_ref(), weight)
                .map_err(|message| problems.at(target.span(), message))
                .ok()
        })
        .collect()
}

/// `retries`, `fail_timeout` and `max_requests` in range.
fn check_numbers(at: &mut impl FnMut(Range<usize>, String), settings: &UpstreamConfig) {
    if *settings.retries.get_ref() > MAX_RETRIES {
        at(
            settings.retries.span(),
            format!(
                "retries is at most {MAX_RETRIES} (it counts other targets tried after a failed connection)"
            ),
        );
    }
    if settings.max_fails > 0 && settings.fail_timeout.get_ref().0.is_zero() {
        at(
            settings.fail_timeout.span(),
            "fail_timeout must be more than zero (or set max_fails = 0 to never take a target out)"
                .to_string(),
        );
    }
    if let Some(max) = &settings.max_requests
        && *max.get_ref() == 0
    {
        at(
            max.span(),
            "max_requests must be at least 1 (leave it out for no limit)".to_string(),
        );
    }
}

/// `[upstreams.NAME.health_check]`, or `None` with its errors recorded.
fn health_check(
    at: &mut impl FnMut(Range<usize>, String),
    check: &HealthCheckConfig,
) -> Option<HealthCheck> {
    let mut ok = true;
    let mut fault = |span: Range<usize>, message: String| {
        ok = false;
        at(span, format!("health_check: {message}"));
    };
    let text = check.path.get_ref();
    let path = PathAndQuery::try_from(text.as_str())
        .ok()
        .filter(|_| text.starts_with('/'));
    if path.is_none() {
        fault(
            check.path.span(),
            format!("path `{text}` must be a path starting with `/`, such as \"/healthz\""),
        );
    }
    for (value, what) in [(&check.interval, "interval"), (&check.timeout, "timeout")] {
        if value.get_ref().0.is_zero() {
            fault(value.span(), format!("{what} must be more than zero"));
        }
    }
    for (value, what) in [(&check.healthy, "healthy"), (&check.unhealthy, "unhealthy")] {
        if *value.get_ref() == 0 {
            fault(
                value.span(),
                format!("{what} must be at least 1 (checks in a row)"),
            );
        }
    }
    let path = path?;
    ok.then(|| HealthCheck {
        path,
        interval: check.interval.get_ref().0,
        timeout: check.timeout.get_ref().0,
        healthy: *check.healthy.get_ref(),
        unhealthy: *check.unhealthy.get_ref(),
    })
}

/// The `ca_file`'s bytes, read relative to the config and checked to hold
/// usable certificates.
fn ca_file(
    source: &Source,
    at: &mut impl FnMut(Range<usize>, String),
    file: &Spanned<String>,
) -> Option<Vec<u8>> {
    let pem = std::fs::read(source.base_dir().join(file.get_ref()))
        .map_err(|err| {
            at(
                file.span(),
                format!("cannot read ca_file `{}`: {err}", file.get_ref()),
            )
        })
        .ok()?;
    ca_roots(&pem)
        .map_err(|message| at(file.span(), message))
        .ok()?;
    Some(pem)
}

/// `client_cert` and `client_key` read and checked to belong together; both
/// or neither must be given.
fn client_identity(
    source: &Source,
    at: &mut impl FnMut(Range<usize>, String),
    config: &Spanned<UpstreamConfig>,
) -> Option<ClientIdentity> {
    let settings = config.get_ref();
    let (cert, key) = match (&settings.client_cert, &settings.client_key) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        (Some(given), None) | (None, Some(given)) => {
            at(
                given.span(),
                "client_cert and client_key go together: give both files (the certificate chain and its private key)".to_string(),
            );
            return None;
        }
    };
    let mut read = |file: &Spanned<String>, key: &str| {
        std::fs::read(source.base_dir().join(file.get_ref()))
            .map_err(|err| {
                at(
                    file.span(),
                    format!("cannot read {key} `{}`: {err}", file.get_ref()),
                )
            })
            .ok()
    };
    let identity = ClientIdentity {
        cert_pem: read(cert, "client_cert")?,
        key_pem: read(key, "client_key")?,
    };
    if let Err(message) = identity.certified_key() {
        let span = if message.starts_with("client_key") {
            key.span()
        } else {
            cert.span()
        };
        at(span, message);
        return None;
    }
    Some(identity)
}

/// `tls_server_name`, parsed.
fn server_name(
    at: &mut impl FnMut(Range<usize>, String),
    name: &Spanned<String>,
) -> Option<ServerName<'static>> {
    ServerName::try_from(name.get_ref().clone())
        .map_err(|_| {
            at(
                name.span(),
                format!(
                    "tls_server_name `{}` is not a DNS name or IP address",
                    name.get_ref()
                ),
            );
        })
        .ok()
}

/// An HTTP/2-only setting `key`: its value, or `default` when it is absent
/// or wrong (the error recorded). Given without HTTP/2, or out of `valid`
/// (which `range` says in words), it is an error.
fn http2_only<T: Copy>(
    at: &mut impl FnMut(Range<usize>, String),
    key: &str,
    given: Option<&Spanned<T>>,
    http2: bool,
    (default, valid, range): (T, fn(&T) -> bool, &str),
) -> T {
    let Some(value) = given else {
        return default;
    };
    if !http2 {
        at(value.span(), format!("{key} needs protocol = \"http2\""));
    } else if !valid(value.get_ref()) {
        at(value.span(), format!("{key} must be {range}"));
    } else {
        return *value.get_ref();
    }
    default
}
