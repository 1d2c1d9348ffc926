//! The PROXY protocol (versions 1 and 2, parsed by `ppp`) on a listener with
//! `proxy_protocol`: a load balancer in `proxy_protocol_from` opens each
//! connection with a header naming the client, whose address then stands for
//! the peer (forwarding headers, `ip` rate limits, ip-restriction, the access
//! log). A connection from any other peer is closed, as is one whose header
//! is missing, malformed, too long or slower than `header_read_timeout`.
//!
//! Only the header's bytes are read from the socket (never the request or
//! TLS handshake after it): version 2 says its length up front; a version 1
//! line is consumed up to its end by peeking first.

use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Version 2's signature, which no version 1 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header (the protocol's own limit).
const V1_MAX: usize = 107;

/// The longest version 2 header accepted, TLVs included (the protocol
/// allows 64 KiB; load balancers send well under 1 KiB).
pub const V2_MAX: usize = 4096;

/// Reads the header at the start of `stream`: the client's address, or the
/// peer's (`peer`) when the header says the connection is the proxy's own (a
/// version 2 `LOCAL` health check, version 1 `UNKNOWN`). `Err` says why the
/// connection is to be closed.
pub async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, String> {
    // Both versions are longer than this (version 1's shortest line is 15).
    let mut header = vec![0; V2_SIGNATURE.len()];
    read(stream, &mut header).await?;
    let client = if header == V2_SIGNATURE {
        read_v2(stream, header, peer).await?
    } else if header.starts_with(b"PROXY ") {
        read_v1(stream, header, peer).await?
    } else {
        return Err("no PROXY protocol header".into());
    };
    // An IPv4 client a dual-stack balancer names as `::ffff:a.b.c.d` is the
    // IPv4 address, for address rules, limits and logs alike.
    Ok(SocketAddr::new(client.ip().to_canonical(), client.port()))
}

/// The rest of a version 2 header after its signature.
async fn read_v2(
    stream: &mut TcpStream,
    mut header: Vec<u8>,
    peer: SocketAddr,
) -> Result<SocketAddr, String> {
    let mut fixed = [0; 4];
    read(stream, &mut fixed).await?;
    header.extend_from_slice(&fixed);
    let length = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if header.len() + length > V2_MAX {
        return Err(format!("a PROXY protocol v2 header over {V2_MAX} bytes"));
    }
    let start = header.len();
    header.resize(start + length, 0);
    read(stream, &mut header[start..]).await?;
    let parsed = ppp::v2::Header::try_from(header.as_slice())
        .map_err(|err| format!("a malformed PROXY protocol v2 header: {err}"))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(peer);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        ppp::v2::Addresses::IPv6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => peer,
    })
}

/// The rest of a version 1 line, up to and including its `\n`, consuming
/// nothing after it.
async fn read_v1(
    stream: &mut TcpStream,
    mut header: Vec<u8>,
    peer: SocketAddr,
) -> Result<SocketAddr, String> {
    let mut ahead = [0; V1_MAX];
    while header.last() != Some(&b'\n') {
        let room = V1_MAX.saturating_sub(header.len());
        if room == 0 {
            return Err(format!("a PROXY protocol v1 header over {V1_MAX} bytes"));
        }
        let seen = stream
            .peek(&mut ahead[..room])
            .await
            .map_err(|err| err.to_string())?;
        if seen == 0 {
            return Err("the connection closed in its PROXY protocol header".into());
        }
        // Up to the end of the line if it is there, else all of it (every
        // byte before the end belongs to the header).
        let take = ahead[..seen]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(seen, |end| end + 1);
        let start = header.len();
        header.resize(start + take, 0);
        read(stream, &mut header[start..]).await?;
    }
    let text =
        std::str::from_utf8(&header).map_err(|_| "a PROXY protocol v1 header that is not text")?;
    let parsed = ppp::v1::Header::try_from(text)
        .map_err(|err| format!("a malformed PROXY protocol v1 header: {err}"))?;
    Ok(match parsed.addresses {
        ppp::v1::Addresses::Tcp4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        ppp::v1::Addresses::Tcp6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        ppp::v1::Addresses::Unknown => peer,
    })
}

async fn read(stream: &mut TcpStream, into: &mut [u8]) -> Result<(), String> {
    stream
        .read_exact(into)
        .await
        .map(|_| ())
        .map_err(|err| format!("reading the PROXY protocol header: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What the server reads from a connection that sent `bytes`: the
    /// address, and the bytes left after the header.
    async fn exchange(bytes: Vec<u8>) -> (Result<SocketAddr, String>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(&bytes).await.expect("write");
            stream.shutdown().await.expect("shutdown");
        });
        let (mut stream, peer) = listener.accept().await.expect("accept");
        let result = read_header(&mut stream, peer).await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        client.await.expect("client");
        (result, rest)
    }

    #[tokio::test]
    async fn a_v1_header_names_the_client_and_leaves_the_request() {
        let sent = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n".to_vec();
        let (result, rest) = exchange(sent).await;
        assert_eq!(result, Ok("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (result, _) = exchange(b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n".to_vec()).await;
        assert_eq!(result, Ok("[2001:db8::1]:4000".parse().expect("addr")));
    }

    #[tokio::test]
    async fn a_v2_header_names_the_client_and_local_keeps_the_peer() {
        let mut sent = V2_SIGNATURE.to_vec();
        // PROXY over TCP/IPv4, 12 address bytes.
        sent.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 1, 187,
        ]);
        sent.extend_from_slice(b"rest");
        let (result, rest) = exchange(sent).await;
        assert_eq!(result, Ok("198.51.100.9:8080".parse().expect("addr")));
        assert_eq!(rest, b"rest");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        let (result, _) = exchange(local).await;
        assert_eq!(result.map(|a| a.ip().is_loopback()), Ok(true));
    }

    #[tokio::test]
    async fn a_missing_malformed_or_oversized_header_is_refused() {
        for sent in [
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n".to_vec(),
            [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
            [V2_SIGNATURE.as_slice(), &[0x21, 0x11, 0xff, 0xff]].concat(),
            b"PROXY TCP4 1.2.3.4".to_vec(),
        ] {
            let (result, _) = exchange(sent.clone()).await;
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(&sent));
        }
    }
}
