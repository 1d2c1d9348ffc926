//! The built-in `xml-json` plugin: converts request and response bodies
//! between XML and JSON, chosen per route and direction, like Apigee's
//! XMLToJSON and JSONToXML policies. The default serves a JSON client in front
//! of an XML upstream: responses XML -> JSON, requests untouched.
//!
//! ```text
//!  client                      on_request                     upstream
//!  JSON body  --(json-to-xml)-->  XML body, Content-Type  -->
//!             <-(xml-to-json)--  JSON body, Content-Type  <--  XML body
//!                              on_response
//! ```
//!
//! A body is converted only when its `Content-Type` is one of the configured
//! XML (or JSON) media types; anything else passes untouched. A body that
//! cannot be converted (malformed, a DOCTYPE, over a limit) fails the request
//! with a JSON error: 400 (415 for a charset or content-encoding the plugin
//! does not read) for the client's body, 502 for the upstream's.
//!
//! The mapping is xmltodict's (`@` for attributes, `#text` for text beside
//! attributes or children, repeated elements as arrays) with Apigee's options;
//! `docs/transformation.md` describes it. XML -> JSON writes the JSON as it
//! reads the XML; JSON -> XML reads the document once into a tree and writes
//! it once. Both are linear in the input, with limits on depth, element and
//! attribute counts, name length and output size.

mod config;
mod error;
mod json_reader;
mod json_to_xml;
mod json_writer;
mod media_type;
mod names;
mod swar;
mod xml_reader;
mod xml_to_json;

pub use config::{Direction, Limits, Mapping, Options, Recognize};
pub use error::ConvertError;
pub use json_to_xml::json_to_xml;
pub use xml_to_json::xml_to_json;

use plugin_sdk::{Action, Config, Context, Headers, Needs, Plugin, Request, Response, log};

/// Headers that describe the bytes of a body, and are wrong once it is
/// converted (`Content-Length` is set anew instead).
const BODY_CHECKSUMS: &[&str] = &["content-md5", "digest", "content-digest", "repr-digest"];

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct XmlJson {
    options: Options,
}

/// A converted body and its media type.
type Converted<'a> = Result<(Vec<u8>, &'a str), ConvertError>;

impl XmlJson {
    /// Converts `body` if `direction` asks for it and `headers` say the body
    /// is of the kind it reads; `None` leaves the body alone.
    fn convert(
        &self,
        direction: Direction,
        headers: &Headers,
        body: Option<&[u8]>,
    ) -> Option<Converted<'_>> {
        let options = &self.options;
        let (source, target) = match direction {
            Direction::None => return None,
            Direction::XmlToJson => (&options.xml_types, options.json_content_type.as_str()),
            Direction::JsonToXml => (&options.json_types, options.xml_content_type.as_str()),
        };
        let body = body.filter(|body| !body.is_empty())?;
        let content_type = headers.get("content-type")?;
        if !media_type::matches_any(content_type, source) {
            return None;
        }
        if let Some(coding) = headers
            .get("content-encoding")
            .filter(|coding| !coding.trim().eq_ignore_ascii_case("identity"))
        {
            return Some(Err(ConvertError::Compressed(coding.to_string())));
        }
        if let Some(charset) = media_type::charset(content_type).filter(|c| !media_type::is_utf8(c))
        {
            return Some(Err(ConvertError::Charset(charset.to_string())));
        }
        let converted = match direction {
            Direction::XmlToJson => xml_to_json(body, &options.mapping),
            _ => json_to_xml(body, &options.mapping),
        };
        Some(converted.map(|body| (body, target)))
    }
}

/// Labels a converted body.
fn describe_body(headers: &mut Headers, content_type: &str, length: usize) {
    headers.set("content-type", content_type);
    // The gateway recomputes it for a replaced body too; set here so the
    // headers are right whoever reads them next.
    headers.set("content-length", length.to_string());
    for name in BODY_CHECKSUMS {
        headers.remove(name);
    }
}

fn error_body(status: u16, error: String, request_id: Option<&str>) -> Vec<u8> {
    let mut body = serde_json::json!({ "error": error, "status": status });
    if let Some(id) = request_id {
        body["request_id"] = id.into();
    }
    body.to_string().into_bytes()
}

impl Plugin for XmlJson {
    const NAME: &'static str = "xml-json";

    fn init(config: Config) -> Result<Self, String> {
        Ok(XmlJson {
            options: Options::from_config(&config)?,
        })
    }

    /// Only the phases that convert something: a phase taken reads bodies, and
    /// the gateway buffers them for it. A body over the entry's `max_body`
    /// cannot be converted, and passing it unconverted would hand the client
    /// the wrong format: the gateway answers 413 (request) or 502 (response)
    /// instead (no `LARGE_BODIES_PASS`).
    fn needs(&self) -> Needs {
        let mut needs = Needs::NONE;
        if self.options.request != Direction::None {
            needs = needs | Needs::REQUEST | Needs::REQUEST_BODY;
        }
        if self.options.response != Direction::None {
            needs = needs | Needs::RESPONSE | Needs::RESPONSE_BODY;
        }
        needs
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Action {
        match self.convert(self.options.request, req.headers(), req.body()) {
            None => Action::Continue,
            Some(Ok((body, content_type))) => {
                describe_body(req.headers_mut(), content_type, body.len());
                req.set_body(body);
                Action::Continue
            }
            Some(Err(error)) => {
                let status = error.request_status();
                log::info(&format!(
                    "xml-json: request body refused with {status}: {error}"
                ));
                let body = error_body(
                    status,
                    format!("request body cannot be converted: {error}"),
                    req.headers().get("x-request-id"),
                );
                Action::Respond(
                    Response::new(status)
                        .with_header("content-type", "application/json")
                        .with_body(body),
                )
            }
        }
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, _ctx: &mut Context) {
        match self.convert(self.options.response, resp.headers(), resp.body()) {
            None => {}
            Some(Ok((body, content_type))) => {
                describe_body(resp.headers_mut(), content_type, body.len());
                resp.set_body(Some(body));
            }
            Some(Err(error)) => {
                log::warn(&format!(
                    "xml-json: upstream response refused with 502: {error}"
                ));
                let body = error_body(
                    502,
                    format!("upstream response cannot be converted: {error}"),
                    None,
                );
                // Nothing of the upstream's answer is kept: its headers
                // describe a body the client will not get.
                let mut headers = Headers::new();
                headers.set("content-type", "application/json");
                headers.set("content-length", body.len().to_string());
                *resp.headers_mut() = headers;
                resp.set_status(502);
                resp.set_body(Some(body));
            }
        }
    }
}

plugin_sdk::export!(XmlJson);
