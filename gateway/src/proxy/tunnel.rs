//! Upgraded connections (WebSocket): once the upstream has answered `101
//! Switching Protocols` and the client has received it, the two connections
//! are joined and bytes are copied both ways, unread, until both sides have
//! closed, either fails, or neither sends anything for the route's idle
//! timeout.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed their end.
    Closed,
    /// Nothing was sent either way for the idle timeout.
    Idle,
}

/// Joins `client` and `upstream` once both have switched protocols, in a task
/// of its own: the request that set it up has finished.
pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, route: String) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(route, %err, "upgrade did not complete");
                return;
            }
        };
        let open = &crate::metrics::metrics().tunnels;
        open.inc();
        let ended = relay(TokioIo::new(client), TokioIo::new(upstream), idle).await;
        open.dec();
        match ended {
            Ok(how) => tracing::debug!(route, ?how, "upgraded connection ended"),
            Err(err) => tracing::debug!(route, %err, "upgraded connection failed"),
        }
    });
}

/// Copies bytes between `a` and `b` in both directions. A side that closes
/// its end has the other side's write end shut down, and the other direction
/// goes on until it closes too. Any read or write error ends both directions,
/// as does `idle` without a byte either way (a write that cannot finish
/// within `idle` counts as a failure).
pub async fn relay<A, B>(a: A, b: B, idle: Duration) -> io::Result<Ended>
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let mut a_buffer = vec![0u8; BUFFER];
    let mut b_buffer = vec![0u8; BUFFER];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            read = a_read.read(&mut a_buffer), if a_open => {
                a_open = pass(read?, &a_buffer, &mut b_write, idle).await?;
            }
            read = b_read.read(&mut b_buffer), if b_open => {
                b_open = pass(read?, &b_buffer, &mut a_write, idle).await?;
            }
            () = tokio::time::sleep(idle) => return Ok(Ended::Idle),
        }
    }
    Ok(Ended::Closed)
}

/// Writes the `read` bytes just read into `buffer` to `to`, or shuts `to`'s
/// write end down when the read found the end. Whether the reading side is
/// still open.
async fn pass<W: AsyncWrite + Unpin>(
    read: usize,
    buffer: &[u8],
    to: &mut W,
    idle: Duration,
) -> io::Result<bool> {
    let stalled = || io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading");
    if read == 0 {
        tokio::time::timeout(idle, to.shutdown())
            .await
            .map_err(|_| stalled())??;
        return Ok(false);
    }
    tokio::time::timeout(idle, async {
        to.write_all(&buffer[..read]).await?;
        to.flush().await
    })
    .await
    .map_err(|_| stalled())??;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_pass_both_ways_and_half_closes_propagate() {
        let (mut client, gateway_side) = tokio::io::duplex(64);
        let (upstream_side, mut upstream) = tokio::io::duplex(64);
        let relay = tokio::spawn(relay(gateway_side, upstream_side, Duration::from_secs(5)));
        client.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        upstream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        // More than the duplex buffer, so the relay must wait on the reader.
        let big = vec![7u8; 100_000];
        let writer = tokio::spawn(async move {
            upstream.write_all(&big).await.expect("write");
            upstream.shutdown().await.expect("shutdown");
            upstream
        });
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.expect("read");
        assert_eq!(received.len(), 100_000);
        assert!(received.iter().all(|&b| b == 7));
        // The upstream closed its end; the client's direction still works.
        let mut upstream = writer.await.expect("writer");
        client.write_all(b"late").await.expect("write");
        upstream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"late");
        client.shutdown().await.expect("shutdown");
        assert_eq!(relay.await.expect("relay").expect("ok"), Ended::Closed);
    }

    #[tokio::test]
    async fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
        let (mut client, gateway_side) = tokio::io::duplex(64);
        let (upstream_side, _upstream) = tokio::io::duplex(64);
        let idle = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let relay = tokio::spawn(relay(gateway_side, upstream_side, idle));
        client.write_all(b"x").await.expect("write");
        let ended = relay.await.expect("relay").expect("ok");
        assert_eq!(ended, Ended::Idle);
        assert!(started.elapsed() >= idle);
        // The gateway dropped its ends: the client sees the close.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.expect("read"), 0);
    }
}
