//! Durations and byte sizes as people write them: `"30s"`, `"250ms"`, `"1MiB"`.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// A duration written as a number and a unit: `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Parses `"30s"`, `"250ms"`, `"2m"`, `"1h"`, `"1.5s"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        plugin_shared::units::parse_duration(text).map(Duration)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Duration::parse(&text).map_err(de::Error::custom)
    }
}

/// A byte count: a plain integer, or a string with a unit (`B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"64KiB"`, `"10MB"`, `"512"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        plugin_shared::units::parse_size(text).map(ByteSize)
    }

    /// The size as `usize`, saturating on 32-bit hosts.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 65536 or \"64KiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("30s").map(|d| d.0.as_millis()), Ok(30_000));
        assert_eq!(Duration::parse("250ms").map(|d| d.0.as_millis()), Ok(250));
        assert_eq!(Duration::parse("1.5s").map(|d| d.0.as_millis()), Ok(1_500));
        assert_eq!(Duration::parse("2m").map(|d| d.0.as_secs()), Ok(120));
        assert!(Duration::parse("30").is_err());
        assert!(Duration::parse("s").is_err());
        assert!(Duration::parse("3x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65_536)));
        assert_eq!(ByteSize::parse("1MB"), Ok(ByteSize(1_000_000)));
        assert_eq!(ByteSize::parse("512"), Ok(ByteSize(512)));
        assert!(ByteSize::parse("1PB").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }
}
