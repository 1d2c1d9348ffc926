//! Parameters: read from the request where OpenAPI's `in` says, taken apart
//! as its `style` and `explode` say, and converted to the types their
//! schema names, so the schema sees values rather than text.
//!
//! | in | styles | default |
//! |---|---|---|
//! | path | `simple`, `label`, `matrix` | `simple` |
//! | query | `form`, `spaceDelimited`, `pipeDelimited`, `deepObject` | `form` (explode) |
//! | header | `simple` | `simple` |
//! | cookie | `form` | `form` (explode) |

use percent_encoding::percent_decode_str;
use plugin_sdk::Request;
use request_validator_schema::{Kind, Shape, coerce};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Where a parameter is.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    /// A path template's `{name}`.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
    /// A cookie of the `Cookie` header.
    Cookie,
}

impl Location {
    /// As failures name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
            Location::Cookie => "cookie",
        }
    }
}

/// How a value is serialised (OpenAPI's `style`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Style {
    /// `a,b` (path, header).
    Simple,
    /// `.a.b` (path).
    Label,
    /// `;name=a,b` (path).
    Matrix,
    /// `name=a&name=b` or `name=a,b` (query, cookie).
    Form,
    /// `name=a%20b` (query arrays).
    SpaceDelimited,
    /// `name=a|b` (query arrays).
    PipeDelimited,
    /// `name[key]=value` (query objects).
    DeepObject,
}

impl Style {
    /// Whether `self` can be used `in` there.
    fn fits(self, location: Location) -> bool {
        use Style::*;
        match location {
            Location::Path => matches!(self, Simple | Label | Matrix),
            Location::Query => matches!(self, Form | SpaceDelimited | PipeDelimited | DeepObject),
            Location::Header => self == Simple,
            Location::Cookie => self == Form,
        }
    }

    /// The style of a parameter `in` there that names none.
    fn default_for(location: Location) -> Style {
        match location {
            Location::Path | Location::Header => Style::Simple,
            Location::Query | Location::Cookie => Style::Form,
        }
    }
}

/// A parameter as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    /// Its name (for headers, any case).
    pub name: String,
    /// Where it is.
    #[serde(rename = "in")]
    pub location: Location,
    /// Whether a request must have it (path parameters always must).
    #[serde(default)]
    pub required: bool,
    /// How it is serialised.
    #[serde(default)]
    pub style: Option<Style>,
    /// Whether arrays and objects are spread over several names or values.
    #[serde(default)]
    pub explode: Option<bool>,
    /// The value is JSON text (OpenAPI's `content` with a JSON media type),
    /// not a styled value.
    #[serde(default)]
    pub json: bool,
    /// The schema its value must match; none accepts anything.
    #[serde(default)]
    pub schema: Option<Value>,
}

/// A parameter ready to read requests.
#[derive(Debug)]
pub struct Reader {
    pub name: String,
    pub location: Location,
    pub required: bool,
    style: Style,
    explode: bool,
    json: bool,
    shape: Shape,
}

/// What went wrong reading a parameter, before any schema.
pub type Fault = String;

/// How the pieces of a raw value are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// As they are (header values).
    None,
    /// Percent-decoded (path segments, cookies).
    Percent,
    /// Percent-decoded with `+` as a space (the query).
    Form,
}

impl Reader {
    /// `spec`, its style checked, of `shape`.
    pub fn new(spec: &ParameterSpec, shape: Shape) -> Result<Self, String> {
        let style = spec.style.unwrap_or(Style::default_for(spec.location));
        if !style.fits(spec.location) {
            return Err(format!(
                "parameter `{}`: style {style:?} cannot be used in the {}",
                spec.name,
                spec.location.as_str()
            ));
        }
        if style == Style::DeepObject && !matches!(shape, Shape::Object(_)) {
            return Err(format!(
                "parameter `{}`: style deepObject is for objects",
                spec.name
            ));
        }
        Ok(Reader {
            name: match spec.location {
                Location::Header => spec.name.to_ascii_lowercase(),
                _ => spec.name.clone(),
            },
            location: spec.location,
            required: spec.required || spec.location == Location::Path,
            style,
            explode: spec.explode.unwrap_or(style == Style::Form),
            json: spec.json,
            shape,
        })
    }

    /// The parameter's value in `req`: `None` when absent.
    pub fn read(&self, req: &Request) -> Result<Option<Value>, Fault> {
        match self.location {
            Location::Query => self.read_query(req),
            Location::Path => match req.param(&self.name) {
                Some(raw) => self.read_path(raw).map(Some),
                None => Ok(None),
            },
            Location::Header => {
                let lines: Vec<&str> = req.headers().get_all(&self.name).collect();
                if lines.len() != req.headers().count(&self.name) {
                    return Err("has a line that is not UTF-8 text".to_string());
                }
                // `x_limit` beside `x-limit`: servers that map headers to
                // variables read both as one.
                let alias = |n: &str| n.replace('_', "-").eq_ignore_ascii_case(&self.name);
                if req
                    .headers()
                    .iter()
                    .any(|(n, _)| n.contains('_') && alias(n))
                {
                    return Err("is also given with `_` for `-` in its name".to_string());
                }
                if lines.is_empty() {
                    return Ok(None);
                }
                self.styled(&lines.join(","), ',', Encoding::None).map(Some)
            }
            Location::Cookie => match cookie(req, &self.name)? {
                Some(raw) => self.styled(raw, ',', Encoding::Percent).map(Some),
                None => Ok(None),
            },
        }
    }

    /// A path segment's value: `simple` as is, `label` after its `.`,
    /// `matrix` after its `;name=` (exploded arrays repeat it).
    fn read_path(&self, raw: &str) -> Result<Value, Fault> {
        match self.style {
            Style::Label => {
                let rest = raw
                    .strip_prefix('.')
                    .ok_or("expected a label value starting with `.`")?;
                let separator = if self.explode { '.' } else { ',' };
                self.styled(rest, separator, Encoding::Percent)
            }
            Style::Matrix => self.read_matrix(raw),
            _ => self.styled(raw, ',', Encoding::Percent),
        }
    }

    fn read_matrix(&self, raw: &str) -> Result<Value, Fault> {
        let pairs: Vec<&str> = raw.split(';').skip(1).collect();
        let prefix = format!("{}=", self.name);
        if raw.is_empty() || !raw.starts_with(';') {
            return Err(format!("expected a matrix value `;{}=...`", self.name));
        }
        match (&self.shape, self.explode) {
            (Shape::Array(kind), true) => {
                let values: Result<Vec<Value>, Fault> = pairs
                    .iter()
                    .map(|p| {
                        let value = p
                            .strip_prefix(prefix.as_str())
                            .ok_or("expected `name=value` pairs")?;
                        Ok(coerce(&decode(value, false)?, *kind))
                    })
                    .collect();
                values.map(Value::Array)
            }
            (Shape::Object(_), true) => {
                let joined = pairs.join(",");
                self.styled(&joined, ',', Encoding::Percent)
            }
            _ => {
                // One pair: another (`;id=5;id=9`) might be what the upstream reads.
                let value = match pairs.as_slice() {
                    [one] => one.strip_prefix(prefix.as_str()),
                    _ => None,
                };
                let value = value.ok_or_else(|| format!("expected one `;{}=value`", self.name))?;
                self.styled(value, ',', Encoding::Percent)
            }
        }
    }

    /// A query parameter: form style reads every `name=` (or, exploded
    /// objects, every property's name), the delimited styles split one
    /// value, deepObject reads every `name[key]=`.
    fn read_query(&self, req: &Request) -> Result<Option<Value>, Fault> {
        let pairs = raw_pairs(req.query());
        if self.style != Style::DeepObject
            && pairs.iter().any(|(k, _)| {
                k.strip_prefix(self.name.as_str())
                    .is_some_and(|rest| rest.starts_with('['))
            })
        {
            // `name[]=` or `name[0]=`: what many frameworks read as `name`.
            return Err(format!("is also given as `{}[...]`", self.name));
        }
        if self.json {
            return match single(&pairs, &self.name)? {
                Some(raw) => json_value(&decode(raw, true)?).map(Some),
                None => Ok(None),
            };
        }
        match (&self.shape, self.style, self.explode) {
            (Shape::Array(kind), Style::Form, true) => {
                let values: Result<Vec<Value>, Fault> = pairs
                    .iter()
                    .filter(|(k, _)| k == &self.name)
                    .map(|(_, v)| Ok(coerce(&decode(v, true)?, *kind)))
                    .collect();
                let values = values?;
                Ok((!values.is_empty()).then_some(Value::Array(values)))
            }
            (Shape::Object(properties), Style::Form, true) => {
                let mut object = Map::new();
                for (property, kind) in properties {
                    if let Some(raw) = single(&pairs, property)? {
                        object.insert(property.clone(), coerce(&decode(raw, true)?, *kind));
                    }
                }
                Ok((!object.is_empty()).then_some(Value::Object(object)))
            }
            (Shape::Object(properties), Style::DeepObject, _) => {
                deep_object(&pairs, &self.name, properties)
            }
            (Shape::Array(kind), Style::SpaceDelimited | Style::PipeDelimited, true) => {
                // Exploded, the delimited styles are form's repeated names.
                let values: Result<Vec<Value>, Fault> = pairs
                    .iter()
                    .filter(|(k, _)| k == &self.name)
                    .map(|(_, v)| Ok(coerce(&decode(v, true)?, *kind)))
                    .collect();
                let values = values?;
                Ok((!values.is_empty()).then_some(Value::Array(values)))
            }
            (_, Style::SpaceDelimited | Style::PipeDelimited, _) => {
                let Some(raw) = single(&pairs, &self.name)? else {
                    return Ok(None);
                };
                let separator = if self.style == Style::PipeDelimited {
                    '|'
                } else {
                    ' '
                };
                let text = decode(raw, true)?;
                Ok(Some(self.split(&text, separator)))
            }
            _ => match single(&pairs, &self.name)? {
                Some(raw) => self.styled(raw, ',', Encoding::Form).map(Some),
                None => Ok(None),
            },
        }
    }

    /// A raw (still percent-encoded) value split at `separator` as the
    /// shape says, each piece decoded then converted.
    fn styled(&self, raw: &str, separator: char, encoding: Encoding) -> Result<Value, Fault> {
        let piece = |text: &str| match encoding {
            // Optional whitespace around a header list's items is not data.
            Encoding::None => Ok(text.trim_matches([' ', '\t']).to_string()),
            Encoding::Percent => decode(text, false),
            Encoding::Form => decode(text, true),
        };
        if self.json {
            return json_value(&piece(raw)?);
        }
        match &self.shape {
            Shape::Scalar(kind) => Ok(coerce(&piece(raw)?, *kind)),
            Shape::Array(kind) => {
                if raw.is_empty() {
                    return Ok(Value::Array(Vec::new()));
                }
                let items: Result<Vec<Value>, Fault> = raw
                    .split(separator)
                    .map(|p| Ok(coerce(&piece(p)?, *kind)))
                    .collect();
                items.map(Value::Array)
            }
            Shape::Object(properties) => {
                let parts: Result<Vec<String>, Fault> = raw.split(separator).map(piece).collect();
                object_of(
                    &parts?,
                    properties,
                    self.explode && self.style != Style::Form,
                )
            }
        }
    }

    /// An already decoded value split at `separator` (the delimited styles).
    fn split(&self, text: &str, separator: char) -> Value {
        let kind = match self.shape {
            Shape::Array(kind) | Shape::Scalar(kind) => kind,
            Shape::Object(_) => Kind::Text,
        };
        Value::Array(text.split(separator).map(|p| coerce(p, kind)).collect())
    }
}

/// An object from `k,v,k,v` (`pairs` false) or `k=v,k=v` parts.
fn object_of(parts: &[String], properties: &[(String, Kind)], pairs: bool) -> Result<Value, Fault> {
    let kind_of = |name: &str| {
        properties
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Kind::Text, |(_, k)| *k)
    };
    let mut object = Map::new();
    if pairs {
        for part in parts {
            let (name, value) = part.split_once('=').ok_or("expected `name=value` pairs")?;
            object.insert(name.to_string(), coerce(value, kind_of(name)));
        }
    } else {
        if !parts.len().is_multiple_of(2) {
            return Err("expected names and values in turn".to_string());
        }
        for pair in parts.chunks(2) {
            object.insert(pair[0].clone(), coerce(&pair[1], kind_of(&pair[0])));
        }
    }
    Ok(Value::Object(object))
}

/// `name[key]=value` pairs of the query as an object.
fn deep_object(
    pairs: &[(String, &str)],
    name: &str,
    properties: &[(String, Kind)],
) -> Result<Option<Value>, Fault> {
    let mut object = Map::new();
    for (key, raw) in pairs {
        let Some(property) = key
            .strip_prefix(name)
            .and_then(|k| k.strip_prefix('['))
            .and_then(|k| k.strip_suffix(']'))
        else {
            continue;
        };
        let kind = properties
            .iter()
            .find(|(n, _)| n == property)
            .map_or(Kind::Text, |(_, k)| *k);
        if object
            .insert(property.to_string(), coerce(&decode(raw, true)?, kind))
            .is_some()
        {
            return Err(format!("`{name}[{property}]` is given more than once"));
        }
    }
    Ok((!object.is_empty()).then_some(Value::Object(object)))
}

/// The query's pairs: names decoded, values still encoded (so a `%2C` in a
/// value stays data when the value is split at commas).
fn raw_pairs(query: &str) -> Vec<(String, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                decode(name, true).unwrap_or_else(|_| name.to_string()),
                value,
            )
        })
        .collect()
}

/// The one raw value of `name`, or a fault when it is given twice (which
/// copy the upstream reads is not for the gateway to guess).
fn single<'q>(pairs: &[(String, &'q str)], name: &str) -> Result<Option<&'q str>, Fault> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| *v);
    let first = values.next();
    if values.next().is_some() {
        return Err("is given more than once".to_string());
    }
    Ok(first)
}

/// Percent-decoded text (`+` is a space in a query, `form` true).
fn decode(raw: &str, form: bool) -> Result<String, Fault> {
    let spaced;
    let raw = if form && raw.contains('+') {
        spaced = raw.replace('+', " ");
        spaced.as_str()
    } else {
        raw
    };
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "is not UTF-8 text once percent-decoded".to_string())
}

/// A value that is JSON text.
fn json_value(text: &str) -> Result<Value, Fault> {
    crate::json::parse(text.as_bytes()).map_err(|e| format!("is not JSON: {e}"))
}

/// The raw value of cookie `name` in the request's `Cookie` header(s), or
/// a fault when it is given twice (frameworks differ in which they read).
fn cookie<'r>(req: &'r Request, name: &str) -> Result<Option<&'r str>, Fault> {
    let mut values = req
        .headers()
        .get_all("cookie")
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    let first = values.next();
    if values.next().is_some() {
        return Err("is given more than once".to_string());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reader(
        location: Location,
        style: Option<Style>,
        explode: Option<bool>,
        shape: Shape,
    ) -> Reader {
        let spec = ParameterSpec {
            style,
            explode,
            ..parameter("id", location)
        };
        Reader::new(&spec, shape).expect("a valid style")
    }

    /// A parameter named `name` in `location`, with no style or schema.
    fn parameter(name: &str, location: Location) -> ParameterSpec {
        ParameterSpec {
            name: name.into(),
            location,
            required: false,
            style: None,
            explode: None,
            json: false,
            schema: None,
        }
    }

    fn query(reader: &Reader, query: &str) -> Result<Option<Value>, Fault> {
        reader.read(&Request::new("GET", &format!("/?{query}")))
    }

    fn path(reader: &Reader, raw: &str) -> Result<Option<Value>, Fault> {
        reader.read(&Request::new("GET", "/").with_param("id", raw))
    }

    const INTS: Shape = Shape::Array(Kind::Integer);

    fn object() -> Shape {
        Shape::Object(vec![
            ("role".into(), Kind::Text),
            ("age".into(), Kind::Integer),
        ])
    }

    #[test]
    fn query_form_arrays_explode_by_default_and_split_commas_when_not() {
        let exploded = reader(Location::Query, None, None, INTS);
        assert_eq!(query(&exploded, "id=3&id=4&x=1"), Ok(Some(json!([3, 4]))));
        assert_eq!(query(&exploded, "x=1"), Ok(None));
        let joined = reader(Location::Query, None, Some(false), INTS);
        assert_eq!(query(&joined, "id=3,4,a"), Ok(Some(json!([3, 4, "a"]))));
        let text = reader(Location::Query, None, Some(false), Shape::Array(Kind::Text));
        assert_eq!(query(&text, "id=a%2Cb,c"), Ok(Some(json!(["a,b", "c"]))));
    }

    #[test]
    fn query_objects_in_form_deep_object_and_delimited_styles() {
        let form = reader(Location::Query, None, None, object());
        assert_eq!(
            query(&form, "role=admin&age=40"),
            Ok(Some(json!({"role": "admin", "age": 40})))
        );
        let joined = reader(Location::Query, None, Some(false), object());
        assert_eq!(
            query(&joined, "id=role,admin,age,40"),
            Ok(Some(json!({"role": "admin", "age": 40})))
        );
        let deep = reader(
            Location::Query,
            Some(Style::DeepObject),
            Some(true),
            object(),
        );
        assert_eq!(
            query(&deep, "id%5Brole%5D=x&id[age]=7"),
            Ok(Some(json!({"role": "x", "age": 7})))
        );
        let spaces = reader(
            Location::Query,
            Some(Style::SpaceDelimited),
            Some(false),
            INTS,
        );
        assert_eq!(query(&spaces, "id=1%202+3"), Ok(Some(json!([1, 2, 3]))));
        let pipes = reader(
            Location::Query,
            Some(Style::PipeDelimited),
            Some(false),
            INTS,
        );
        assert_eq!(query(&pipes, "id=1|2"), Ok(Some(json!([1, 2]))));
    }

    #[test]
    fn a_scalar_given_twice_is_a_fault() {
        let one = reader(Location::Query, None, None, Shape::Scalar(Kind::Integer));
        assert_eq!(query(&one, "id=1"), Ok(Some(json!(1))));
        assert!(query(&one, "id=1&id=2").is_err());
    }

    #[test]
    fn path_styles_simple_label_and_matrix() {
        let simple = reader(Location::Path, None, None, INTS);
        assert_eq!(path(&simple, "1,2"), Ok(Some(json!([1, 2]))));
        let pairs = reader(Location::Path, None, Some(true), object());
        assert_eq!(
            path(&pairs, "role=a,age=2"),
            Ok(Some(json!({"role": "a", "age": 2})))
        );
        let label = reader(Location::Path, Some(Style::Label), Some(true), INTS);
        assert_eq!(path(&label, ".1.2"), Ok(Some(json!([1, 2]))));
        assert!(path(&label, "1.2").is_err());
        let matrix = reader(Location::Path, Some(Style::Matrix), Some(true), INTS);
        assert_eq!(path(&matrix, ";id=1;id=2"), Ok(Some(json!([1, 2]))));
        let matrix = reader(Location::Path, Some(Style::Matrix), None, INTS);
        assert_eq!(path(&matrix, ";id=1,2"), Ok(Some(json!([1, 2]))));
        let text = reader(Location::Path, None, None, Shape::Scalar(Kind::Text));
        assert_eq!(path(&text, "caf%C3%A9"), Ok(Some(json!("café"))));
    }

    #[test]
    fn headers_join_their_lines_and_cookies_are_found_by_name() {
        let header = reader(Location::Header, None, None, INTS);
        let req = Request::new("GET", "/")
            .with_header("ID", "1,2")
            .with_header("id", "3");
        assert_eq!(header.read(&req), Ok(Some(json!([1, 2, 3]))));
        let cookie = reader(Location::Cookie, None, None, Shape::Scalar(Kind::Integer));
        let req = Request::new("GET", "/").with_header("cookie", "a=b; id=42");
        assert_eq!(cookie.read(&req), Ok(Some(json!(42))));
    }

    #[test]
    fn what_an_upstream_could_read_otherwise_is_a_fault() {
        let scalar = reader(Location::Query, None, None, Shape::Scalar(Kind::Text));
        assert_eq!(
            query(&scalar, "id=a+b"),
            Ok(Some(json!("a b"))),
            "`+` is a space in a query"
        );
        assert!(query(&scalar, "id=5&id[]=9").is_err(), "a bracketed alias");
        assert!(query(&scalar, "id[0]=9").is_err());
        let matrix = reader(
            Location::Path,
            Some(Style::Matrix),
            None,
            Shape::Scalar(Kind::Integer),
        );
        assert!(path(&matrix, ";id=5;id=999").is_err());
        let cookie = reader(Location::Cookie, None, None, Shape::Scalar(Kind::Integer));
        let twice = Request::new("GET", "/").with_header("cookie", "id=5; id=999");
        assert!(cookie.read(&twice).is_err());
        let header = reader(Location::Header, None, None, Shape::Array(Kind::Boolean));
        let spaced = Request::new("GET", "/").with_header("id", "true, false");
        assert_eq!(header.read(&spaced), Ok(Some(json!([true, false]))));
        let exploded = reader(
            Location::Query,
            Some(Style::PipeDelimited),
            Some(true),
            INTS,
        );
        assert_eq!(query(&exploded, "id=1&id=2"), Ok(Some(json!([1, 2]))));
    }

    #[test]
    fn a_header_also_given_with_underscores_is_a_fault() {
        let named = parameter("x-limit", Location::Header);
        let limit = Reader::new(&named, Shape::Scalar(Kind::Integer)).expect("a header");
        let plain = Request::new("GET", "/").with_header("x-limit", "5");
        assert_eq!(limit.read(&plain), Ok(Some(json!(5))));
        let aliased = plain.with_header("x_limit", "5000");
        assert!(limit.read(&aliased).is_err());
    }

    #[test]
    fn styles_that_do_not_fit_the_location_are_refused() {
        let spec = |location, style| ParameterSpec {
            style: Some(style),
            ..parameter("x", location)
        };
        assert!(
            Reader::new(
                &spec(Location::Header, Style::Form),
                Shape::Scalar(Kind::Text)
            )
            .is_err()
        );
        assert!(Reader::new(&spec(Location::Path, Style::DeepObject), object()).is_err());
        assert!(Reader::new(&spec(Location::Query, Style::DeepObject), INTS).is_err());
    }
}
