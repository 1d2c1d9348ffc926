//! What a signed request says about its signature: the `Authorization`
//! header's or the presigned query's credential, signed headers and
//! signature, parsed strictly, and the request's time.

/// The one algorithm of Signature Version 4 with HMAC-SHA256.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// `AKID/YYYYMMDD/region/service/aws4_request`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key_id: String,
    /// The scope's day, `YYYYMMDD`.
    pub date: String,
    /// The scope's region.
    pub region: String,
    /// The scope's service.
    pub service: String,
}

/// What a signature covers and the signature itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Whose key, for which day, region and service.
    pub credential: Credential,
    /// The signed headers' names, lower-case and sorted.
    pub signed_headers: Vec<String>,
    /// 64 lower-case hex digits.
    pub signature: String,
}

/// A credential scope: `AKID/YYYYMMDD/region/service/aws4_request`.
pub fn parse_credential(text: &str) -> Result<Credential, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let [id, date, region, service, terminator] = parts[..] else {
        return Err(
            "the credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request".into(),
        );
    };
    if terminator != "aws4_request" {
        return Err("the credential scope must end with aws4_request".into());
    }
    if id.is_empty() || id.len() > 128 {
        return Err("the credential's access key id must be 1 to 128 characters".into());
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the credential's date must be YYYYMMDD".into());
    }
    Ok(Credential {
        access_key_id: id.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
    })
}

/// `SignedHeaders`: lower-case header names separated by `;`, sorted, each
/// once.
pub fn parse_signed_headers(text: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = text.split(';').map(str::to_string).collect();
    let valid = |name: &String| {
        !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
            })
    };
    if !names.iter().all(valid) {
        return Err("signed headers must be lower-case header names separated by `;`".into());
    }
    if names.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err("signed headers must be sorted, each once".into());
    }
    Ok(names)
}

/// The signature: 64 lower-case hex digits.
pub fn check_signature(text: &str) -> Result<String, String> {
    let hex = text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex {
        Ok(text.to_string())
    } else {
        Err("the signature must be 64 lower-case hex digits".into())
    }
}

/// An `Authorization` header of Signature Version 4:
/// `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`, the
/// three parts once each, in any order, separated by `,` and optional
/// spaces.
pub fn parse_authorization(value: &str) -> Result<Signed, String> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or("the Authorization header is not AWS4-HMAC-SHA256")?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim_matches(' ');
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("malformed Authorization part `{}`", shown(part)))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => return Err(format!("unknown Authorization part `{}`", shown(other))),
        };
        if slot.replace(value).is_some() {
            return Err(format!("Authorization part `{name}` given twice"));
        }
    }
    let missing = |name: &str| format!("the Authorization header has no {name}");
    Ok(Signed {
        credential: parse_credential(credential.ok_or_else(|| missing("Credential"))?)?,
        signed_headers: parse_signed_headers(
            signed_headers.ok_or_else(|| missing("SignedHeaders"))?,
        )?,
        signature: check_signature(signature.ok_or_else(|| missing("Signature"))?)?,
    })
}

/// The first 32 characters of client text quoted in a refusal (the answer
/// and the log line), escaped.
fn shown(text: &str) -> String {
    text.chars()
        .take(32)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Seconds since the Unix epoch of an ISO 8601 basic time,
/// `YYYYMMDDTHHMMSSZ` (`X-Amz-Date`).
pub fn amz_date_seconds(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|d| d.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// The days of `month` (1 to 12) in `year`, leap years counted.
fn days_in_month(year: u64, month: u64) -> u64 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (from
/// 1970 on).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// An HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) as an
/// `X-Amz-Date` (`19941106T084937Z`).
pub fn http_date_to_amz(text: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split(' ').collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let clock = time.as_bytes();
    if day.len() != 2 || clock.len() != 8 || clock[2] != b':' || clock[5] != b':' {
        return None;
    }
    let time = time.replace(':', "");
    let amz = format!("{year}{month:02}{day}T{time}Z");
    amz_date_seconds(&amz).map(|_| amz)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTHZ: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    #[test]
    fn authorization_headers_parse_strictly() {
        let signed = parse_authorization(AUTHZ).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(signed.credential.access_key_id, "AKIDEXAMPLE");
        assert_eq!(signed.credential.date, "20150830");
        assert_eq!(signed.credential.service, "iam");
        assert_eq!(
            signed.signed_headers,
            ["content-type", "host", "x-amz-date"]
        );
        // No spaces after the commas, and another order: accepted.
        let compact = AUTHZ.replace(", ", ",");
        assert!(parse_authorization(&compact).is_ok());
        let reordered = "AWS4-HMAC-SHA256 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7, Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host";
        assert!(parse_authorization(reordered).is_ok());
        for bad in [
            AUTHZ.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
            AUTHZ.replace("aws4_request", "aws5_request"),
            AUTHZ.replace("content-type;host", "host;content-type"),
            AUTHZ.replace("content-type;host", "Content-Type;host"),
            AUTHZ.replace("Signature=5d", "Signature=5D"),
            AUTHZ.replace(
                ", Signature=",
                ", Credential=AKID/20150830/us-east-1/iam/aws4_request, Signature=",
            ),
            AUTHZ.replace("/us-east-1/", "/us-east-1/extra/"),
            format!("{AUTHZ}, Extra=1"),
            "Bearer abc".to_string(),
        ] {
            assert!(parse_authorization(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(amz_date_seconds("19700101T000000Z"), Some(0));
        assert_eq!(amz_date_seconds("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(amz_date_seconds("20150830T123600"), None);
        assert_eq!(amz_date_seconds("20151330T123600Z"), None);
        assert_eq!(amz_date_seconds("2015083OT123600Z"), None);
        assert_eq!(
            http_date_to_amz("Sun, 30 Aug 2015 12:36:00 GMT").as_deref(),
            Some("20150830T123600Z")
        );
        assert_eq!(http_date_to_amz("Sunday, 30-Aug-15 12:36:00 GMT"), None);
        // Days that do not exist, and clocks not written HH:MM:SS.
        assert_eq!(amz_date_seconds("20150231T000000Z"), None);
        assert_eq!(amz_date_seconds("20150229T000000Z"), None);
        assert!(amz_date_seconds("20160229T000000Z").is_some());
        assert_eq!(http_date_to_amz("Sun, 30 Aug 2015 12:3600 GMT"), None);
        assert_eq!(http_date_to_amz("Sun, 30 Aug 2015 123600 GMT"), None);
        assert_eq!(http_date_to_amz("Sun, 3 Aug 2015 12:36:00 GMT"), None);
    }

    #[test]
    fn refusals_quote_at_most_32_characters_of_the_client_text() {
        let long = format!("AWS4-HMAC-SHA256 {}", "x".repeat(4000));
        let said = parse_authorization(&long).err().unwrap_or_default();
        assert!(said.len() < 80, "{said}");
    }
}
