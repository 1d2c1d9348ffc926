//! Unloaded latency, paired: one keep-alive connection per target, and one
//! request to each target in turn, over and over, so that drift in the
//! machine's speed (a noisy VM can change speed by 2x within a run) hits every
//! target alike. Differences between the medians are what a pipeline adds.
//!
//! ```text
//! cargo bench -q -p gateway --bench latency -- 3000 'nginx|http://127.0.0.1:8080/' \
//!     'key|http://127.0.0.1:8081/|x-api-key: secret'
//! ```
//!
//! The first argument is the number of requests per target; each further one
//! is `name|url` or `name|url|header`, or `name|redis://host:port|ARG ARG...`
//! for one Redis command (its reply must be a line or an array of integers):
//! the round trip a Redis-backed plugin makes, timed in the same rotation.
//! Prints `name median_us` per target.
//! The client is a bare blocking socket, timed with `Instant`, so its own cost
//! is small and the same for every target.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

struct Target {
    name: String,
    stream: TcpStream,
    request: Vec<u8>,
    redis: bool,
    samples: Vec<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some((count, specs)) = args.split_first() else {
        eprintln!("usage: latency REQUESTS 'name|url[|header]'...");
        std::process::exit(2);
    };
    let count: usize = count.parse().unwrap_or_else(|_| {
        eprintln!("latency: `{count}` is not a number of requests");
        std::process::exit(2);
    });
    let mut targets: Vec<Target> = specs.iter().map(|spec| target(spec)).collect();
    let mut buffer = vec![0u8; 1 << 20];
    // Warm-up: connections, caches, plugin instances.
    for _ in 0..200 {
        for target in &mut targets {
            exchange(target, &mut buffer);
        }
    }
    let n = targets.len();
    for round in 0..count {
        // Rotate who goes first, so no target always follows the same one.
        let first = round % n;
        for offset in 0..n {
            let target = &mut targets[(first + offset) % n];
            let started = Instant::now();
            exchange(target, &mut buffer);
            let micros = started.elapsed().as_secs_f64() * 1e6;
            target.samples.push(micros);
        }
    }
    for target in &mut targets {
        target.samples.sort_by(f64::total_cmp);
        let median = target.samples[target.samples.len() / 2];
        println!("{} {median:.1}", target.name);
    }
}

fn target(spec: &str) -> Target {
    let mut parts = spec.splitn(3, '|');
    let (Some(name), Some(url)) = (parts.next(), parts.next()) else {
        fail(&format!("`{spec}` is not name|url[|header]"));
    };
    let extra = parts.next();
    let connect = |authority: &str| {
        let stream = TcpStream::connect(authority)
            .unwrap_or_else(|e| fail(&format!("cannot connect to {authority}: {e}")));
        stream
            .set_nodelay(true)
            .unwrap_or_else(|e| fail(&format!("nodelay: {e}")));
        stream
    };
    if let Some(authority) = url.strip_prefix("redis://") {
        let args: Vec<&str> = extra.unwrap_or("PING").split_whitespace().collect();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        return Target {
            name: name.to_string(),
            stream: connect(authority),
            request: request.into_bytes(),
            redis: true,
            samples: Vec::with_capacity(1 << 16),
        };
    }
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| fail(&format!("`{url}` is not an http:// or redis:// URL")));
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n");
    if let Some(header) = extra {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    Target {
        name: name.to_string(),
        stream: connect(authority),
        request: request.into_bytes(),
        redis: false,
        samples: Vec::with_capacity(1 << 16),
    }
}

/// Sends the request and reads the whole response (`content-length` or
/// chunked), refusing anything but 200.
fn exchange(target: &mut Target, buffer: &mut [u8]) {
    target
        .stream
        .write_all(&target.request)
        .unwrap_or_else(|e| fail(&format!("{}: write: {e}", target.name)));
    let mut filled = 0;
    loop {
        let read = target
            .stream
            .read(&mut buffer[filled..])
            .unwrap_or_else(|e| fail(&format!("{}: read: {e}", target.name)));
        if read == 0 {
            fail(&format!("{}: connection closed", target.name));
        }
        filled += read;
        let done = if target.redis {
            redis_complete(&buffer[..filled], &target.name)
        } else {
            complete(&buffer[..filled], &target.name)
        };
        if let Some(done) = done {
            if done != filled {
                fail(&format!("{}: more bytes than one response", target.name));
            }
            return;
        }
        if filled == buffer.len() {
            fail(&format!(
                "{}: response over {} bytes",
                target.name,
                buffer.len()
            ));
        }
    }
}

/// The length of the response at the start of `bytes`, once all of it is there.
fn complete(bytes: &[u8], name: &str) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        fail(&format!(
            "{name}: answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let header = |field: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(field))
            .map(str::trim)
            .map(str::to_string)
    };
    if let Some(length) = header("content-length:") {
        let length: usize = length
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name}: bad content-length")));
        return (bytes.len() >= head_end + length).then_some(head_end + length);
    }
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let body = &bytes[head_end..];
        let end = body.windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head_end + end + 5);
    }
    fail(&format!("{name}: response without a length"))
}

/// The length of the Redis reply at the start of `bytes`, once all of it is
/// there: one line, or an array of one-line elements. Errors are refused.
fn redis_complete(bytes: &[u8], name: &str) -> Option<usize> {
    if bytes.first() == Some(&b'-') {
        fail(&format!(
            "{name}: {}",
            String::from_utf8_lossy(bytes).trim()
        ));
    }
    let lines = if bytes.first() == Some(&b'*') {
        let end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let count: usize = std::str::from_utf8(&bytes[1..end])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| fail(&format!("{name}: bad array reply")));
        count + 1
    } else {
        1
    };
    let mut seen = 0;
    for (at, pair) in bytes.windows(2).enumerate() {
        if pair == b"\r\n" {
            seen += 1;
            if seen == lines {
                return Some(at + 2);
            }
        }
    }
    None
}

fn fail(message: &str) -> ! {
    eprintln!("latency: {message}");
    std::process::exit(1)
}
