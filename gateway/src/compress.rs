//! Content codings. The client's response is compressed (gzip, brotli or
//! zstd, as its `Accept-Encoding` prefers, RFC 9110 section 12.5.3) while it
//! streams, when its route's [`Compression`] says so; and compressed bodies
//! (gzip, deflate, br, zstd) are decoded, also while they stream, for the
//! plugins that read them.
//!
//! Nothing here buffers a body: every coding is a reader over the body's
//! frames, and the caller caps what it reads (a decoded zip bomb stops at the
//! cap, not in memory).

use crate::body::{Body, BoxError};
use async_compression::Level;
use async_compression::tokio::bufread as codec;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufRead, AsyncRead};

/// A coding the gateway compresses responses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `br`: Brotli (RFC 7932).
    Brotli,
    /// `zstd`: Zstandard (RFC 8878), with a window HTTP clients accept.
    Zstd,
}

impl Algorithm {
    /// Every algorithm, in the default order of preference.
    pub const ALL: [Algorithm; 3] = [Algorithm::Gzip, Algorithm::Brotli, Algorithm::Zstd];

    /// Its content-coding name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Brotli => "br",
            Algorithm::Zstd => "zstd",
        }
    }

    /// The algorithm a content-coding name (any case) stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|alg| name.eq_ignore_ascii_case(alg.name()))
            .or_else(|| {
                name.eq_ignore_ascii_case("x-gzip")
                    .then_some(Algorithm::Gzip)
            })
    }

    /// The level used unless the config sets one: gzip's own default (6),
    /// and the levels of brotli and zstd that cost about as much.
    pub fn default_level(self) -> i32 {
        match self {
            Algorithm::Gzip => 6,
            Algorithm::Brotli => 4,
            Algorithm::Zstd => 3,
        }
    }
}

/// The levels `level` may be: every algorithm takes them as its own level.
pub const LEVELS: std::ops::RangeInclusive<i64> = 1..=9;

/// Bodies of fewer bytes than this are sent as they are unless the config says.
pub const DEFAULT_MIN_SIZE: u64 = 1024;

/// The media types compressed unless the config lists others.
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "text/csv",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/problem+json",
    "application/ld+json",
    "application/xml",
    "application/problem+xml",
    "image/svg+xml",
];

/// A route's response compression, checked by the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// The algorithms offered, in order of preference among those the
    /// client accepts equally.
    pub algorithms: Vec<Algorithm>,
    /// A body known to be shorter is sent as it is.
    pub min_size: u64,
    /// Media types compressed, lowercase: `type/subtype`, or `type/*`.
    pub content_types: Vec<String>,
    /// The level for every algorithm; each one's default when `None`.
    pub level: Option<i32>,
}

impl Compression {
    /// `response`, compressed for a client that sent `accept`
    /// (`Accept-Encoding`) with a `method` request, when it qualifies; a
    /// response that qualifies gets `Vary: Accept-Encoding` either way.
    pub fn apply(
        &self,
        method: &Method,
        accept: Option<&str>,
        mut response: Response<Body>,
    ) -> Response<Body> {
        if !self.qualifies(method, &response) {
            return response;
        }
        add_vary(response.headers_mut());
        let Some(algorithm) = negotiate(accept, &self.algorithms) else {
            return response;
        };
        let (mut parts, body) = response.into_parts();
        let headers = &mut parts.headers;
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(algorithm.name()),
        );
        headers.remove(header::CONTENT_LENGTH);
        // Ranges of the compressed bytes are not offered (as nginx does).
        headers.remove(header::ACCEPT_RANGES);
        weaken_etag(headers);
        let level = self.level.unwrap_or(algorithm.default_level());
        Response::from_parts(parts, encode(body, algorithm, level))
    }

    /// Whether `response` is one to compress: not for `HEAD`, not a `1xx`,
    /// `204`, `206` or `304`, no `Content-Range` or `Content-Encoding`, no
    /// `Cache-Control: no-transform`, a listed media type, not known to be
    /// shorter than `min_size`.
    fn qualifies(&self, method: &Method, response: &Response<Body>) -> bool {
        let status = response.status();
        let headers = response.headers();
        let no_body = matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        ) || status.is_informational();
        if *method == Method::HEAD
            || no_body
            || headers.contains_key(header::CONTENT_RANGE)
            || headers
                .get_all(header::CONTENT_ENCODING)
                .iter()
                .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
            || lists(headers, &header::CACHE_CONTROL, "no-transform")
            || !self.listed_type(headers)
        {
            return false;
        }
        known_length(response).is_none_or(|length| length >= self.min_size.max(1))
    }

    /// Whether the response's media type is one of `content_types`.
    fn listed_type(&self, headers: &HeaderMap) -> bool {
        let Some(media) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
        else {
            return false;
        };
        self.content_types
            .iter()
            .any(|listed| match listed.strip_suffix('*') {
                Some(prefix) => media.starts_with(prefix),
                None => media == *listed,
            })
    }
}

/// The algorithm to compress with for a client that sent `accept`, among
/// `offered` (in order of preference among equal qualities), or `None` for
/// none (RFC 9110 section 12.5.3): no header, an empty one, or one that
/// accepts none of them (`q=0`) or prefers `identity`, directly or by `*`.
pub fn negotiate(accept: Option<&str>, offered: &[Algorithm]) -> Option<Algorithm> {
    let accept = accept?;
    let mut listed: [Option<u16>; 3] = [None; 3];
    let (mut star, mut identity) = (None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        if coding.is_empty() {
            continue;
        }
        // An item whose quality cannot be read is ignored.
        let Some(q) = quality(parts) else { continue };
        if coding == "*" {
            star.get_or_insert(q);
        } else if coding.eq_ignore_ascii_case("identity") {
            identity.get_or_insert(q);
        } else if let Some(algorithm) = Algorithm::from_name(coding) {
            listed[algorithm as usize].get_or_insert(q);
        }
    }
    let mut best: Option<(Algorithm, u16)> = None;
    for &algorithm in offered {
        let q = listed[algorithm as usize].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((algorithm, q));
        }
    }
    let (algorithm, q) = best?;
    // `identity` unlisted is acceptable but no better than any coding.
    match identity.or(star) {
        Some(plain) if plain > q => None,
        _ => Some(algorithm),
    }
}

/// The `q` parameter among an item's parameters, in thousandths (1000 when
/// absent), or `None` when it is not a valid qvalue (RFC 9110 section 12.4.2).
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let digits_ok = fraction.len() <= 3 && fraction.bytes().all(|b| b.is_ascii_digit());
        let thousandths = match whole {
            "0" if digits_ok => format!("{fraction:0<3}").parse().ok()?,
            "1" if digits_ok && fraction.bytes().all(|b| b == b'0') => 1000,
            _ => return None,
        };
        return Some(thousandths);
    }
    Some(1000)
}

/// Whether a comma-separated header lists `token` (any case).
fn lists(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Adds `Accept-Encoding` to `Vary`, unless it is there already (or `*`).
fn add_vary(headers: &mut HeaderMap) {
    if lists(headers, &header::VARY, "accept-encoding") || lists(headers, &header::VARY, "*") {
        return;
    }
    headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
}

/// A strong `ETag` made weak: the compressed bytes are not the ones it
/// named, but the representation is the same.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"\"") {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, weak);
        }
    }
}

/// The body's length, when known: `Content-Length`, or the body's exact size.
fn known_length(response: &Response<Body>) -> Option<u64> {
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    declared.or_else(|| http_body::Body::size_hint(response.body()).exact())
}

/// `body` compressed with `algorithm` at `level`, as it streams.
pub fn encode(body: Body, algorithm: Algorithm, level: i32) -> Body {
    let input = reader(body);
    let level = Level::Precise(level);
    match algorithm {
        Algorithm::Gzip => from_reader(codec::GzipEncoder::with_quality(input, level)),
        Algorithm::Brotli => from_reader(codec::BrotliEncoder::with_quality(input, level)),
        Algorithm::Zstd => from_reader(codec::ZstdEncoder::with_quality(input, level)),
    }
}

/// A content coding the gateway decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` or `x-gzip`.
    Gzip,
    /// `deflate`: zlib (RFC 1950).
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`, its window at most 8 MiB (RFC 9659).
    Zstd,
}

/// The most codings one body may carry for the gateway to decode it (each
/// layer a decoder and a buffer: a header listing thousands would cost their
/// memory and a stack as deep before any byte is read).
pub const MAX_CODINGS: usize = 2;

/// The codings `headers`' `Content-Encoding` lists, in the order they were
/// applied (`identity` left out), or what the gateway cannot decode: a
/// coding it does not know, or more than [`MAX_CODINGS`].
pub fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| "(not text)".to_string())?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let coding = match name.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Brotli,
                "zstd" => Coding::Zstd,
                _ => return Err(name.to_string()),
            };
            if codings.len() == MAX_CODINGS {
                return Err(format!("more than {MAX_CODINGS} codings"));
            }
            codings.push(coding);
        }
    }
    Ok(codings)
}

/// A request body decoded for the plugins that read it, when
/// `Content-Encoding` says it is compressed: the header and
/// `Content-Length` removed, and the decoded bytes failing with
/// [`crate::body::TooLarge`] past `cap`. `Err` names a coding the gateway
/// cannot decode.
pub fn decoded_request(headers: &mut HeaderMap, body: Body, cap: usize) -> Result<Body, String> {
    // No body (a `GET`): nothing to decode.
    if !headers.contains_key(header::CONTENT_ENCODING) || http_body::Body::is_end_stream(&body) {
        return Ok(body);
    }
    let codings = codings(headers)?;
    headers.remove(header::CONTENT_ENCODING);
    if codings.is_empty() {
        return Ok(body);
    }
    headers.remove(header::CONTENT_LENGTH);
    Ok(crate::body::limited(
        decode(body, &codings, cap),
        cap as u64,
    ))
}

/// A response body decoded for the plugins that read it, when its
/// `Content-Encoding` lists only codings the gateway decodes (the header,
/// `Content-Length`, `Accept-Ranges` and a strong `ETag`, which named the
/// encoded bytes, removed); otherwise `body` as it is. A partial answer
/// (`206`, `Content-Range`) is a slice of the encoded bytes and stays as
/// it is. The caller caps what it reads; `cap` bounds each inner layer.
pub fn decoded_response(
    status: StatusCode,
    headers: &mut HeaderMap,
    body: Body,
    cap: usize,
) -> Body {
    // No body (a `HEAD` answer, a `304`): nothing to decode, the head stays.
    let partial =
        status == StatusCode::PARTIAL_CONTENT || headers.contains_key(header::CONTENT_RANGE);
    if partial || http_body::Body::is_end_stream(&body) {
        return body;
    }
    match codings(headers) {
        Ok(codings) if !codings.is_empty() => {
            headers.remove(header::CONTENT_ENCODING);
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::ACCEPT_RANGES);
            let strong = headers
                .get(header::ETAG)
                .is_some_and(|etag| !etag.as_bytes().starts_with(b"W/"));
            if strong {
                headers.remove(header::ETAG);
            }
            decode(body, &codings, cap)
        }
        _ => body,
    }
}

/// How much more than the final cap an inner layer may expand to: an
/// outer coding holding a bomb of empty inner members would otherwise cost
/// decoding without limit while its output stays under the cap.
const INNER_FACTOR: u64 = 4;

/// `body` with `codings` (in the order they were applied) undone; every
/// layer but the last yields at most `cap` × 4 bytes (an error past it).
pub fn decode(body: Body, codings: &[Coding], cap: usize) -> Body {
    let mut input: Pin<Box<dyn AsyncBufRead + Send>> = Box::pin(reader(body));
    let inner_cap = (cap as u64).saturating_mul(INNER_FACTOR);
    for (layer, coding) in codings.iter().rev().enumerate() {
        if layer > 0 {
            // What the previous layer decoded, bounded before it is decoded again.
            let bounded = crate::body::limited(from_reader(input), inner_cap);
            input = Box::pin(reader(bounded));
        }
        let decoded: Pin<Box<dyn AsyncRead + Send>> = match coding {
            Coding::Gzip => {
                let mut decoder = codec::GzipDecoder::new(input);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
            Coding::Deflate => Box::pin(codec::ZlibDecoder::new(input)),
            Coding::Brotli => Box::pin(codec::BrotliDecoder::new(input)),
            Coding::Zstd => {
                let mut decoder = codec::ZstdDecoder::new_for_http(input);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
        };
        input = Box::pin(tokio::io::BufReader::with_capacity(CHUNK, decoded));
    }
    from_reader(input)
}

/// A body's bytes as a buffered reader; its errors carried inside I/O errors.
fn reader(body: Body) -> impl AsyncBufRead + Send + 'static {
    let data = body.map_err(std::io::Error::other).into_data_stream();
    tokio_util::io::StreamReader::new(data)
}

/// The most bytes one frame of an encoded or decoded body holds.
const CHUNK: usize = 16 * 1024;

/// A body read from `reader`.
fn from_reader<R: AsyncRead + Send + 'static>(reader: R) -> Body {
    ReaderBody {
        reader: Box::pin(reader),
        buffer: BytesMut::new(),
        done: false,
    }
    .boxed_unsync()
}

/// The bytes of a reader, as a body's frames.
struct ReaderBody {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    buffer: BytesMut,
    done: bool,
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.buffer.capacity() < CHUNK {
            this.buffer.reserve(CHUNK);
        }
        match tokio_util::io::poll_read_buf(this.reader.as_mut(), cx, &mut this.buffer) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(this.buffer.split().freeze())))),
            Poll::Ready(Err(err)) => {
                this.done = true;
                Poll::Ready(Some(Err(unwrapped(err))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The body's own error when `err` carries one (so a [`crate::body::TooLarge`]
/// or a read timeout keeps its meaning), else `err`.
fn unwrapped(err: std::io::Error) -> BoxError {
    if err.get_ref().is_some() {
        match err.into_inner() {
            Some(inner) => inner,
            None => Box::new(std::io::Error::other("body error")),
        }
    } else {
        Box::new(err)
    }
}

#[cfg(test)]
mod tests {
    use super::Algorithm::{Brotli, Gzip, Zstd};
    use super::*;

    const ALL: &[Algorithm] = &[Gzip, Brotli, Zstd];

    #[test]
    fn no_header_or_an_empty_one_gets_identity() {
        assert_eq!(negotiate(None, ALL), None);
        assert_eq!(negotiate(Some(""), ALL), None);
        assert_eq!(negotiate(Some("identity"), ALL), None);
    }

    #[test]
    fn equal_qualities_follow_the_configured_order() {
        assert_eq!(negotiate(Some("br, gzip, zstd"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("br, zstd"), ALL), Some(Brotli));
        assert_eq!(negotiate(Some("gzip, br"), &[Brotli, Gzip]), Some(Brotli));
        assert_eq!(negotiate(Some("*"), &[Zstd, Gzip]), Some(Zstd));
    }

    #[test]
    fn q_values_choose() {
        assert_eq!(negotiate(Some("gzip;q=0.5, br;q=0.8"), ALL), Some(Brotli));
        assert_eq!(negotiate(Some("gzip;q=0.5, zstd"), ALL), Some(Zstd));
        assert_eq!(negotiate(Some("GZIP ; Q=1.000"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("gzip;q=0.001"), ALL), Some(Gzip));
    }

    #[test]
    fn q_zero_refuses_a_coding() {
        assert_eq!(negotiate(Some("gzip;q=0"), ALL), None);
        assert_eq!(negotiate(Some("gzip;q=0, br"), ALL), Some(Brotli));
        assert_eq!(negotiate(Some("*;q=0"), ALL), None);
        assert_eq!(negotiate(Some("*, gzip;q=0"), &[Gzip]), None);
    }

    #[test]
    fn rfc_9110_examples() {
        // Section 12.5.3's examples.
        assert_eq!(negotiate(Some("compress, gzip"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some(""), ALL), None);
        assert_eq!(negotiate(Some("*"), ALL), Some(Gzip));
        assert_eq!(
            negotiate(Some("compress;q=0.5, gzip;q=1.0"), ALL),
            Some(Gzip)
        );
        assert_eq!(
            negotiate(Some("gzip;q=1.0, identity; q=0.5, *;q=0"), ALL),
            Some(Gzip)
        );
    }

    #[test]
    fn identity_preferred_wins_over_a_lesser_coding() {
        assert_eq!(negotiate(Some("gzip;q=0.5, identity"), ALL), None);
        assert_eq!(negotiate(Some("gzip;q=0.5, *"), &[Gzip]), None);
        assert_eq!(negotiate(Some("gzip;q=0.5, *"), ALL), Some(Brotli));
        assert_eq!(negotiate(Some("gzip, identity"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("gzip, identity;q=0"), ALL), Some(Gzip));
    }

    #[test]
    fn unknown_codings_and_bad_qualities_are_ignored() {
        assert_eq!(negotiate(Some("compress, deflate"), ALL), None);
        assert_eq!(negotiate(Some("gzip;q=2, br;q=0.9"), ALL), Some(Brotli));
        assert_eq!(negotiate(Some("gzip;q=0.1234"), ALL), None);
        assert_eq!(negotiate(Some("gzip;q=abc"), ALL), None);
        assert_eq!(negotiate(Some("x-gzip"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("br"), &[Gzip]), None);
    }

    #[test]
    fn content_encoding_lists_codings_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip, identity, BR"),
        );
        assert_eq!(codings(&headers), Ok(vec![Coding::Gzip, Coding::Brotli]));
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("compress"),
        );
        assert_eq!(codings(&headers), Err("compress".to_string()));
    }

    #[tokio::test]
    async fn every_algorithm_round_trips() {
        let text = "hello, compressed world; ".repeat(500);
        for algorithm in Algorithm::ALL {
            let encoded = encode(crate::body::full(text.clone()), algorithm, 6);
            let coding = match algorithm {
                Gzip => Coding::Gzip,
                Brotli => Coding::Brotli,
                Zstd => Coding::Zstd,
            };
            let decoded = decode(encoded, &[coding], 1 << 20).collect().await;
            let decoded = decoded.map(|c| c.to_bytes()).unwrap_or_default();
            assert_eq!(decoded, Bytes::from(text.clone()), "{algorithm:?}");
        }
    }

    #[test]
    fn a_strong_etag_is_weakened_and_a_weak_one_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        weaken_etag(&mut headers);
        assert_eq!(headers[header::ETAG], "W/\"abc\"");
        weaken_etag(&mut headers);
        assert_eq!(headers[header::ETAG], "W/\"abc\"");
    }
}
