//! The gateway's units: durations (`"250ms"`, `"30s"`, `"1.5s"`, `"5m"`,
//! `"1h"`) and byte sizes (`1000`, `"512KiB"`, `"1MiB"`), with their messages.
//! The gateway parses its own config with them and the SDK hands them to
//! plugin configs, so a value reads the same in both.

use std::time::Duration;

/// A duration: a number (decimals allowed) followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = || {
        format!(
            "invalid duration `{text}`: expected a number followed by ms, s, m or h (for example \"30s\" or \"250ms\")"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(hint)?;
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| hint())?;
    let millis_per_unit = match unit.trim() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(hint()),
    };
    let millis = number * millis_per_unit;
    if !millis.is_finite() || millis > 1.0e12 {
        return Err(hint());
    }
    // Whole microseconds are plenty; the cast cannot overflow after the check.
    Ok(Duration::from_micros((millis * 1000.0) as u64))
}

/// A byte size: digits, optionally followed by `B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB` or `GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let hint = || {
        format!(
            "invalid size `{text}`: expected bytes as an integer or a number followed by B, KB, KiB, MB, MiB, GB or GiB (for example \"1MiB\")"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| hint())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(hint()),
    };
    number.checked_mul(multiplier).ok_or_else(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |text: &str| parse_duration(text).map(|d| d.as_millis());
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms(" 250ms "), Ok(250));
        assert_eq!(ms("1.5s"), Ok(1_500));
        for bad in ["30", "s", "3x", "", "-1s", "1d", "1e400s"] {
            assert!(ms(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512KiB"), Ok(524_288));
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        for bad in ["1PB", "MiB", "1.5MiB", "99999999999999GiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad} was accepted");
        }
    }
}
