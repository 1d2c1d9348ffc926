//! A route's conditions on request headers and query parameters (`[routes.match]`):
//! each names a header or parameter and tests it exactly, by prefix, by a
//! regular expression of bounded size, or for being present or absent. A
//! route matches when all of its conditions hold; among routes of one host,
//! path and method, the one with more conditions is tried first (the router
//! orders them), so a route without any is the fallback.

use http::HeaderMap;

/// The longest regular expression a condition may have.
pub const MAX_REGEX_LEN: usize = 1024;

/// The most memory a compiled regular expression may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A route's conditions.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// On request headers (names lowercase).
    pub headers: Vec<Condition>,
    /// On query parameters (names and values as decoded).
    pub query: Vec<Condition>,
}

/// One condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The header or parameter.
    pub name: String,
    /// What its value must be.
    pub test: Test,
}

/// What a value must be.
#[derive(Debug, Clone)]
pub enum Test {
    /// Equal to this.
    Exact(String),
    /// Starting with this.
    Prefix(String),
    /// Matching this (anywhere, unless anchored).
    Regex(regex::Regex),
    /// Present (`true`) or absent (`false`), whatever its value.
    Present(bool),
}

impl Test {
    /// A regular expression test, or why the pattern cannot be one.
    pub fn regex(pattern: &str) -> Result<Test, String> {
        if pattern.len() > MAX_REGEX_LEN {
            return Err(format!(
                "a regex of {} characters, more than the {MAX_REGEX_LEN} a condition may have",
                pattern.len()
            ));
        }
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Test::Regex)
            .map_err(|e| format!("invalid regex: {e}"))
    }

    /// Whether `values` (every value of the header or parameter) pass: one
    /// of them passes the value tests.
    fn passes<S: AsRef<str>>(&self, mut values: impl Iterator<Item = S>) -> bool {
        match self {
            Test::Present(wanted) => values.next().is_some() == *wanted,
            Test::Exact(wanted) => values.any(|v| v.as_ref() == wanted),
            Test::Prefix(wanted) => values.any(|v| v.as_ref().starts_with(wanted.as_str())),
            Test::Regex(regex) => values.any(|v| regex.is_match(v.as_ref())),
        }
    }

    /// The test as text, to tell two sets of conditions apart.
    fn describe(&self) -> String {
        match self {
            Test::Exact(text) => format!("exact={text:?}"),
            Test::Prefix(text) => format!("prefix={text:?}"),
            Test::Regex(regex) => format!("regex={:?}", regex.as_str()),
            Test::Present(wanted) => format!("present={wanted}"),
        }
    }
}

impl PartialEq for Conditions {
    fn eq(&self, other: &Self) -> bool {
        self.describe() == other.describe()
    }
}

impl Conditions {
    /// How many there are: the more, the earlier a route is tried.
    pub fn len(&self) -> usize {
        self.headers.len() + self.query.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every condition holds for a request with `headers` and
    /// `query` (undecoded).
    pub fn hold(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let headers_hold = self.headers.iter().all(|c| {
            // Every line counts, text or not (one that is not UTF-8 is read
            // lossily): a header is never absent for its bytes.
            let values = headers
                .get_all(c.name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()));
            c.test.passes(values)
        });
        if !headers_hold || self.query.is_empty() {
            return headers_hold;
        }
        // Decoded per condition, borrowing what needs no decoding.
        let query = query.unwrap_or("").as_bytes();
        self.query.iter().all(|c| {
            let values = form_urlencoded::parse(query)
                .filter(|(k, _)| *k == c.name)
                .map(|(_, v)| v);
            c.test.passes(values)
        })
    }

    /// Every condition as text, sorted: equal for equal sets.
    fn describe(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .headers
            .iter()
            .map(|c| format!("header {:?} {}", c.name, c.test.describe()))
            .chain(
                self.query
                    .iter()
                    .map(|c| format!("query {:?} {}", c.name, c.test.describe())),
            )
            .collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, test: Test) -> Conditions {
        Conditions {
            headers: vec![Condition {
                name: name.into(),
                test,
            }],
            query: Vec::new(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                http::HeaderValue::from_str(value).expect("a value"),
            );
        }
        map
    }

    #[test]
    fn each_test_of_a_header() {
        let canary = headers(&[("x-canary", "always")]);
        let none = HeaderMap::new();
        assert!(header("x-canary", Test::Exact("always".into())).hold(&canary, None));
        assert!(!header("x-canary", Test::Exact("alway".into())).hold(&canary, None));
        assert!(header("x-canary", Test::Prefix("alw".into())).hold(&canary, None));
        let regex = Test::regex("^al+ways$").expect("a regex");
        assert!(header("x-canary", regex).hold(&canary, None));
        assert!(header("x-canary", Test::Present(true)).hold(&canary, None));
        assert!(!header("x-canary", Test::Present(true)).hold(&none, None));
        assert!(header("x-canary", Test::Present(false)).hold(&none, None));
        assert!(!header("x-canary", Test::Exact("always".into())).hold(&none, None));
        let mut odd = HeaderMap::new();
        odd.insert(
            "x-debug",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("bytes"),
        );
        assert!(
            !header("x-debug", Test::Present(false)).hold(&odd, None),
            "not text, still present"
        );
        assert!(header("x-debug", Test::Exact("café".into())).hold(&odd, None));
    }

    #[test]
    fn query_conditions_read_decoded_values_and_all_must_hold() {
        let both = Conditions {
            headers: Vec::new(),
            query: vec![
                Condition {
                    name: "v".into(),
                    test: Test::Prefix("2".into()),
                },
                Condition {
                    name: "debug".into(),
                    test: Test::Present(false),
                },
            ],
        };
        let none = HeaderMap::new();
        assert!(both.hold(&none, Some("a=1&v=2%2E1")));
        assert!(!both.hold(&none, Some("v=2&debug")));
        assert!(!both.hold(&none, Some("v=1")));
        assert!(!both.hold(&none, None));
    }

    #[test]
    fn a_large_regex_is_refused() {
        assert!(Test::regex(&"a".repeat(MAX_REGEX_LEN + 1)).is_err());
        assert!(Test::regex("(").is_err());
        assert!(
            Test::regex("[a-z]{1,1000}{1,1000}").is_err(),
            "over the size limit"
        );
    }
}
