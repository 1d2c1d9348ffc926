//! The template engine: minijinja, set up once at init for untrusted data.
//!
//! - Lookups chain (`body.a.b` is undefined when `a` is missing), so
//!   `| default(...)` works at any depth, but printing a missing value, or
//!   passing it to `tojson`, is an error naming it: a typo is never silently
//!   an empty string.
//! - Every `{{ ... }}` in a body is escaped for the body's format: JSON
//!   bodies print values as JSON, XML bodies escape `<`, `&` and quotes, so
//!   no value can break out of its place in the document.
//! - Every render runs on a fuel budget (instructions plus bytes created) and
//!   a recursion limit, and its output is capped.

use crate::error::{Failure, Origin};
use crate::vars::{Phase, Scope, Var, VarSet};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use std::borrow::Cow;
use std::collections::HashMap;

/// Deepest nesting of macro calls and recursive loops. minijinja allows 500;
/// a guest's stack is smaller than a native thread's.
pub const RECURSION_LIMIT: usize = 64;
/// Longest header value a template may render.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

/// What a template renders, which decides how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON document: values print as JSON; the output must parse.
    Json,
    /// An XML document: values print as escaped text.
    Xml,
    /// Anything else (text, form data, header values): values print as is.
    Text,
}

impl Format {
    /// The format for a `Content-Type`.
    pub fn of_content_type(content_type: &str) -> Format {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media == "application/json" || media.ends_with("+json") {
            Format::Json
        } else if media == "application/xml" || media == "text/xml" || media.ends_with("+xml") {
            Format::Xml
        } else {
            Format::Text
        }
    }

    fn auto_escape(self) -> AutoEscape {
        match self {
            Format::Json => AutoEscape::Json,
            Format::Xml => AutoEscape::Custom(Cow::Borrowed("xml")),
            Format::Text => AutoEscape::None,
        }
    }
}

/// One template to compile: its name (`request.body`), source and format.
#[derive(Debug, Clone)]
pub struct Source {
    /// Shown in errors; also the key to render it by.
    pub name: String,
    /// The template text.
    pub text: String,
    /// How its values are escaped.
    pub format: Format,
}

/// The compiled templates of one entry.
pub struct Engine {
    env: Environment<'static>,
    formats: HashMap<String, Format>,
    max_output: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("templates", &self.formats.keys().collect::<Vec<_>>())
            .field("max_output", &self.max_output)
            .finish()
    }
}

/// The environment every entry's templates live in, without templates.
fn environment(fuel: u64, escapes: HashMap<String, AutoEscape>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(fuel));
    env.set_recursion_limit(RECURSION_LIMIT);
    // Block tags leave no blank lines and indentation behind them: output
    // reads like the document it builds, not like the template.
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(move |name| {
        escapes.get(name).cloned().unwrap_or(AutoEscape::None)
    });
    env.set_formatter(format_value);
    env.add_filter("tojson", tojson);
    env.add_filter("fromjson", fromjson);
    env.add_filter("xml_escape", xml_escape_filter);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env
}

impl Engine {
    /// Compiles `sources`. Returns the engine and, per source, the variables
    /// it reads; a syntax error or an unknown variable is an error naming the
    /// template (and the line, for syntax errors).
    pub fn build(
        sources: Vec<Source>,
        fuel: u64,
        max_output: usize,
    ) -> Result<(Engine, Vec<VarSet>), String> {
        let formats: HashMap<String, Format> =
            sources.iter().map(|s| (s.name.clone(), s.format)).collect();
        let escapes = formats
            .iter()
            .map(|(name, format)| (name.clone(), format.auto_escape()))
            .collect();
        let mut env = environment(fuel, escapes);
        let globals: Vec<String> = env.globals().map(|(name, _)| name.to_string()).collect();
        let mut used = Vec::with_capacity(sources.len());
        for source in sources {
            env.add_template_owned(source.name.clone(), source.text)
                .map_err(|err| compile_error(&source.name, &err))?;
            let template = env
                .get_template(&source.name)
                .map_err(|err| compile_error(&source.name, &err))?;
            let mut vars = VarSet::default();
            let mut names: Vec<String> = template.undeclared_variables(false).into_iter().collect();
            names.sort();
            for name in names {
                match Var::from_name(&name) {
                    Some(var) => vars.insert(var),
                    None if globals.contains(&name) => {}
                    None => {
                        return Err(format!(
                            "transform: {}: `{name}` is not a variable; the variables are {}",
                            source.name,
                            Var::ALL.map(Var::name).join(", ")
                        ));
                    }
                }
            }
            used.push(vars);
        }
        Ok((
            Engine {
                env,
                formats,
                max_output,
            },
            used,
        ))
    }

    /// Renders the template `name` over `scope`; a JSON template's output is
    /// checked to parse.
    pub fn render(&self, name: &str, scope: &Scope, phase: Phase) -> Result<String, Failure> {
        let failed = |err: Error| classify(name, &err, phase);
        let template = self.env.get_template(name).map_err(failed)?;
        let output = template.render(scope).map_err(failed)?;
        if output.len() > self.max_output {
            return Err(Failure::TooLarge {
                template: name.to_string(),
                limit: self.max_output,
            });
        }
        if self.formats.get(name) == Some(&Format::Json)
            && let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&output)
        {
            return Err(Failure::NotJson {
                template: name.to_string(),
                reason: err.to_string(),
            });
        }
        Ok(output)
    }
}

/// A compile error as the operator reads it.
fn compile_error(name: &str, err: &Error) -> String {
    let detail = err.detail().unwrap_or("invalid template");
    match err.line() {
        Some(line) => format!("transform: {name} line {line}: {}: {detail}", err.kind()),
        None => format!("transform: {name}: {}: {detail}", err.kind()),
    }
}

/// Who is to blame for a render error, and what to say.
fn classify(name: &str, err: &Error, phase: Phase) -> Failure {
    let template = name.to_string();
    let line = err.line().unwrap_or(0);
    let detail = err.detail().unwrap_or("").to_string();
    match err.kind() {
        ErrorKind::OutOfFuel => Failure::OutOfFuel { template },
        ErrorKind::UndefinedError => {
            // "`body.user.name` is undefined": the root names whose value it is.
            let root = detail
                .strip_prefix('`')
                .and_then(|rest| rest.split(['.', '[', '`']).next())
                .and_then(Var::from_name);
            let (detail, hint) = if detail.is_empty() {
                // Not from a lookup: most often `{{ a if b }}` without `else`.
                (
                    "a value is undefined".to_string(),
                    "`{{ a if b }}` is undefined when b is false: write `{% if b %}...{% endif %}`",
                )
            } else {
                (detail, "add `| default(...)` if it may be missing")
            };
            Failure::Missing {
                origin: root.map_or(Origin::Config, |var| var.origin(phase)),
                template,
                line,
                detail,
                hint,
            }
        }
        kind => Failure::Render {
            template,
            line,
            detail: if detail.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}: {detail}")
            },
        },
    }
}

/// The engine's own error for using `value`, which is undefined: it carries
/// the value's origin, so the message names the path (`body.user` is
/// undefined).
fn undefined(value: &Value) -> Error {
    value
        .get_attr("")
        .err()
        .unwrap_or_else(|| Error::new(ErrorKind::UndefinedError, "a value is undefined"))
}

/// A value as text in XML and text output: `none` is empty, booleans are
/// `true`/`false` (as in JSON and XML Schema), the rest as minijinja prints it.
fn text(value: &Value) -> Cow<'_, str> {
    match value.kind() {
        ValueKind::None => Cow::Borrowed(""),
        ValueKind::Bool => Cow::Borrowed(if value.is_true() { "true" } else { "false" }),
        _ => match value.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(value.to_string()),
        },
    }
}

/// Escapes text for XML element content and attribute values. Characters XML
/// 1.0 cannot carry at all (most C0 controls) become U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A raw CR would reach the reader as LF (XML 1.0 section 2.11).
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// How `{{ ... }}` prints: never an undefined value; escaped by format.
fn format_value(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        return Err(undefined(value));
    }
    match state.auto_escape() {
        AutoEscape::Custom(name) if name == "xml" => {
            if value.is_safe() {
                out.write_str(&text(value))?;
            } else {
                out.write_str(&xml_escape(&text(value)))?;
            }
        }
        AutoEscape::None => out.write_str(&text(value))?,
        _ => minijinja::escape_formatter(out, state, value)?,
    }
    Ok(())
}

/// `tojson`, strict: a missing value is an error, not `null` (use
/// `default(none)` for that). Its output is trusted in a JSON body only; in
/// XML it is escaped like any value, so a quote in it cannot end an attribute.
fn tojson(
    state: &State,
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(undefined(value));
    }
    let json = minijinja::filters::tojson(value, indent, kwargs)?;
    let json = json.as_str().unwrap_or_default().to_string();
    state.consume_fuel(json.len() as u64 / 64)?;
    Ok(if *state.auto_escape() == AutoEscape::Json {
        Value::from_safe_string(json)
    } else {
        Value::from(json)
    })
}

/// `fromjson`: parses a JSON text (a claim, a context value, `raw_body`).
fn fromjson(state: &State, value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(undefined(value));
    }
    let text = value.as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "fromjson expects a string of JSON",
        )
    })?;
    state.consume_fuel(text.len() as u64 / 64)?;
    serde_json::from_str(text).map_err(|err| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("fromjson: not valid JSON: {err}"),
        )
    })
}

/// `xml_escape`: escapes for XML where auto-escaping is off (a text body
/// that embeds XML, a header).
fn xml_escape_filter(value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(undefined(value));
    }
    Ok(Value::from_safe_string(xml_escape(&text(value))))
}

/// `b64encode`: standard base64 (with padding) of the value's UTF-8 text.
fn b64encode(value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(undefined(value));
    }
    Ok(Value::from(BASE64.encode(text(value).as_bytes())))
}

/// `b64decode`: standard base64 to UTF-8 text.
fn b64decode(value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(undefined(value));
    }
    let invalid =
        |what: &str| Error::new(ErrorKind::InvalidOperation, format!("b64decode: {what}"));
    let bytes = BASE64
        .decode(text(value).trim())
        .map_err(|_| invalid("not valid base64"))?;
    let decoded =
        String::from_utf8(bytes).map_err(|_| invalid("decodes to bytes that are not UTF-8"))?;
    Ok(Value::from(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_the_escaping() {
        for (content_type, format) in [
            ("application/json", Format::Json),
            ("Application/JSON; charset=utf-8", Format::Json),
            ("application/problem+json", Format::Json),
            ("application/xml", Format::Xml),
            ("text/xml; charset=utf-8", Format::Xml),
            ("application/soap+xml", Format::Xml),
            ("text/plain", Format::Text),
            ("application/x-www-form-urlencoded", Format::Text),
            ("application/jsonl", Format::Text),
        ] {
            assert_eq!(
                Format::of_content_type(content_type),
                format,
                "{content_type}"
            );
        }
    }

    #[test]
    fn xml_escape_covers_markup_quotes_and_forbidden_characters() {
        assert_eq!(
            xml_escape("<a href=\"x\">'&'</a>\t\r\n\u{0}\u{1F}\u{FFFF}é"),
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;\t&#13;\n\u{FFFD}\u{FFFD}\u{FFFD}é"
        );
    }
}
