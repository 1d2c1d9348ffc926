//! The entry's config: parsed and checked once, at init, into a [`Spec`]
//! that the request path only reads.

use crate::engine::{Format, Source};
use plugin_sdk::Config;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Fuel per render unless the config says otherwise: about 100 000
/// instructions, or 6 MB of data created. A typical mapping over a 10 KB
/// body uses a few thousand.
pub const DEFAULT_FUEL: u64 = 100_000;
const FUEL_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
/// Largest output of one template unless the config says otherwise.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;
const MAX_OUTPUT_CAP: usize = 16 * 1024 * 1024;
/// The content type of a body template that names none.
const DEFAULT_CONTENT_TYPE: &str = "application/json";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    request: Option<RequestSettings>,
    response: Option<ResponseSettings>,
    fuel: Option<u64>,
    max_output: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSettings {
    body: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseSettings {
    body: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    status: Option<StatusSetting>,
    statuses: Option<Vec<StatusPattern>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusSetting {
    Code(u16),
    Template(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusPattern {
    Code(u16),
    Class(String),
}

/// A new body: the template and the `Content-Type` it is sent with.
#[derive(Debug, Clone)]
pub struct BodySpec {
    /// The template's name.
    pub template: String,
    /// Sent as `Content-Type`.
    pub content_type: String,
}

/// The response's new status.
#[derive(Debug, Clone)]
pub enum StatusSpec {
    /// Always this code.
    Fixed(u16),
    /// Rendered by this template.
    Template(String),
}

/// Which upstream statuses a response mapping applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this code.
    Code(u16),
    /// Every code of this class: `2` is `2xx`.
    Class(u16),
}

impl StatusMatch {
    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => code == status,
            StatusMatch::Class(class) => status / 100 == class,
        }
    }
}

/// One phase's mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// A new body, if any.
    pub body: Option<BodySpec>,
    /// Header name (lower case) and the name of its value's template.
    pub headers: Vec<(String, String)>,
    /// A new status (response only).
    pub status: Option<StatusSpec>,
}

impl Mapping {
    /// The names of this mapping's templates.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        let status = match &self.status {
            Some(StatusSpec::Template(name)) => Some(name.as_str()),
            _ => None,
        };
        self.body
            .iter()
            .map(|b| b.template.as_str())
            .chain(self.headers.iter().map(|(_, t)| t.as_str()))
            .chain(status)
    }
}

/// The checked config.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The request mapping.
    pub request: Option<Mapping>,
    /// The response mapping.
    pub response: Option<Mapping>,
    /// Upstream statuses the response mapping applies to.
    pub statuses: Vec<StatusMatch>,
    /// Fuel per render.
    pub fuel: u64,
    /// Largest output of one template.
    pub max_output: usize,
    /// Every template, for the engine.
    pub sources: Vec<Source>,
}

fn content_type(phase: &str, value: Option<String>) -> Result<String, String> {
    let value = value.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string());
    if value.trim().is_empty() || value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "transform: {phase}.content_type: `{value}` is not a media type such as \"application/json\""
        ));
    }
    Ok(value)
}

fn status_match(pattern: StatusPattern) -> Result<StatusMatch, String> {
    let bad = |shown: String| {
        format!(
            "transform: response.statuses: `{shown}` is neither a status code (100 to 599) nor a class such as \"2xx\""
        )
    };
    match pattern {
        StatusPattern::Code(code) if (100..=599).contains(&code) => Ok(StatusMatch::Code(code)),
        StatusPattern::Code(code) => Err(bad(code.to_string())),
        StatusPattern::Class(text) => match text.to_ascii_lowercase().as_bytes() {
            [digit @ b'1'..=b'5', b'x', b'x'] => Ok(StatusMatch::Class(u16::from(digit - b'0'))),
            _ => Err(bad(text)),
        },
    }
}

/// Checks one phase's settings and adds its templates to `sources`.
fn mapping(
    phase: &str,
    body: Option<String>,
    content_type_setting: Option<String>,
    headers: BTreeMap<String, String>,
    sources: &mut Vec<Source>,
) -> Result<Mapping, String> {
    if body.is_none() && content_type_setting.is_some() {
        return Err(format!(
            "transform: {phase}.content_type is set without {phase}.body; to set the header alone, use {phase}.headers"
        ));
    }
    let body = match body {
        Some(text) => {
            let content_type = content_type(phase, content_type_setting)?;
            let template = format!("{phase}.body");
            sources.push(Source {
                name: template.clone(),
                text,
                format: Format::of_content_type(&content_type),
            });
            Some(BodySpec {
                template,
                content_type,
            })
        }
        None => None,
    };
    let mut seen: Vec<String> = Vec::new();
    let mut mapped = Vec::new();
    for (name, text) in headers {
        let lower = name.to_ascii_lowercase();
        if !plugin_sdk::Headers::is_valid_name(&name) {
            return Err(format!(
                "transform: {phase}.headers: `{name}` is not a valid header name"
            ));
        }
        if plugin_shared::limits::FRAMING_HEADERS.contains(&lower.as_str()) {
            return Err(format!(
                "transform: {phase}.headers: `{name}` is set by the gateway and cannot be mapped"
            ));
        }
        if lower == "content-type" && body.is_some() {
            return Err(format!(
                "transform: {phase}.headers: `{name}` conflicts with {phase}.body; use {phase}.content_type"
            ));
        }
        if seen.contains(&lower) {
            return Err(format!(
                "transform: {phase}.headers: `{name}` is listed twice (header names ignore case)"
            ));
        }
        seen.push(lower.clone());
        let template = format!("{phase}.headers.{lower}");
        sources.push(Source {
            name: template.clone(),
            text,
            format: Format::Text,
        });
        mapped.push((lower, template));
    }
    Ok(Mapping {
        body,
        headers: mapped,
        status: None,
    })
}

impl Spec {
    /// Parses and checks the entry's config.
    pub fn from_config(config: &Config) -> Result<Spec, String> {
        let settings: Settings = config.parse().map_err(|err| format!("transform: {err}"))?;
        let mut sources = Vec::new();
        let request = match settings.request {
            Some(r) => Some(mapping(
                "request",
                r.body,
                r.content_type,
                r.headers,
                &mut sources,
            )?),
            None => None,
        };
        let mut statuses = vec![StatusMatch::Class(2)];
        let response = match settings.response {
            Some(r) => Some(response_mapping(r, &mut sources, &mut statuses)?),
            None => None,
        };
        for (phase, m) in [("request", &request), ("response", &response)] {
            if let Some(m) = m
                && m.templates().next().is_none()
                && m.status.is_none()
            {
                return Err(format!(
                    "transform: {phase} maps nothing: give it a body, headers{}",
                    if phase == "response" {
                        " or a status"
                    } else {
                        ""
                    }
                ));
            }
        }
        if request.is_none() && response.is_none() {
            return Err("transform: nothing to do: configure `request`, `response` or both".into());
        }
        let fuel = settings.fuel.unwrap_or(DEFAULT_FUEL);
        if !FUEL_RANGE.contains(&fuel) {
            return Err(format!(
                "transform: fuel must be from {} to {}",
                FUEL_RANGE.start(),
                FUEL_RANGE.end()
            ));
        }
        let max_output = settings.max_output.unwrap_or(DEFAULT_MAX_OUTPUT);
        if max_output == 0 || max_output > MAX_OUTPUT_CAP {
            return Err(format!(
                "transform: max_output must be from 1 to {MAX_OUTPUT_CAP} bytes"
            ));
        }
        Ok(Spec {
            request,
            response,
            statuses,
            fuel,
            max_output,
            sources,
        })
    }
}

/// `response`, checked: its mapping, its status (a code or a template), and
/// the statuses it applies to (into `statuses`, when given).
fn response_mapping(
    r: ResponseSettings,
    sources: &mut Vec<Source>,
    statuses: &mut Vec<StatusMatch>,
) -> Result<Mapping, String> {
    let mut m = mapping("response", r.body, r.content_type, r.headers, sources)?;
    m.status = match r.status {
        None => None,
        Some(StatusSetting::Code(code)) if (100..=599).contains(&code) => {
            Some(StatusSpec::Fixed(code))
        }
        Some(StatusSetting::Code(code)) => {
            return Err(format!(
                "transform: response.status: {code} is not a status code from 100 to 599"
            ));
        }
        Some(StatusSetting::Template(text)) => {
            let name = "response.status".to_string();
            sources.push(Source {
                name: name.clone(),
                text,
                format: Format::Text,
            });
            Some(StatusSpec::Template(name))
        }
    };
    if let Some(patterns) = r.statuses {
        if patterns.is_empty() {
            return Err(
                "transform: response.statuses is empty: the mapping would never apply".into(),
            );
        }
        *statuses = patterns
            .into_iter()
            .map(status_match)
            .collect::<Result<_, _>>()?;
    }
    Ok(m)
}
