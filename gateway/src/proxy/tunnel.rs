//! Upgraded connections (WebSocket): once the upstream has answered `101
//! Switching Protocols` and the client has received it, the two connections
//! are joined and bytes are copied both ways, unread, until both sides have
//! closed, either fails, or neither sends anything for the route's idle
//! timeout.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
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

/// A place among the process's tunnels, taken before a handshake is
/// forwarded and given back when the handshake fails or the tunnel ends.
pub type Permit = crate::limit::Place;

/// Joins `client` and `upstream` once both have switched protocols, in a task
/// of its own: the request that set it up has finished. Both sides get `idle`
/// to finish switching. `permit` (its [`Permit`], and the client's place
/// under `max_connections_per_ip`) is held until the tunnel ends.
pub fn spawn(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    route: String,
    permit: impl Send + 'static,
) {
    tokio::spawn(async move {
        let both = tokio::time::timeout(idle, async { tokio::try_join!(client, upstream) });
        let (client, upstream) = match both.await {
            Ok(Ok(both)) => both,
            Ok(Err(err)) => {
                tracing::debug!(route, %err, "upgrade did not complete");
                return;
            }
            Err(_) => {
                tracing::debug!(route, "upgrade did not complete in time");
                return;
            }
        };
        let open = &crate::metrics::metrics().tunnels;
        open.inc();
        let ended = relay(TokioIo::new(client), TokioIo::new(upstream), idle).await;
        open.dec();
        drop(permit);
        match ended {
            Ok(how) => tracing::debug!(route, ?how, "upgraded connection ended"),
            Err(err) => tracing::debug!(route, %err, "upgraded connection failed"),
        }
    });
}

/// Copies bytes between `a` and `b`, both directions at once (so a side that
/// writes before it reads never waits on the other direction). A side that
/// closes its end has the other side's write end shut down, and the other
/// direction goes on until it closes too. Any read or write error ends both
/// directions, as does `idle` without a byte read or written either way.
pub async fn relay<A, B>(a: A, b: B, idle: Duration) -> io::Result<Ended>
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let active = || last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let both = async {
        tokio::try_join!(
            copy(a_read, b_write, &active),
            copy(b_read, a_write, &active)
        )
    };
    let watchdog = async {
        loop {
            let quiet = started
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        copied = both => copied.map(|_| Ended::Closed),
        () = watchdog => Ok(Ended::Idle),
    }
}

/// Copies `from` to `to` until `from` ends, then shuts `to`'s write end down.
/// Calls `active` after every read and write.
async fn copy<R, W>(mut from: R, mut to: W, active: &impl Fn()) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let read = from.read(&mut buffer).await?;
        active();
        if read == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buffer[..read]).await?;
        to.flush().await?;
        active();
    }
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
    async fn an_echoing_peer_never_deadlocks_the_relay() {
        // Small buffers everywhere: a relay that stopped reading one side
        // while writing to the other would stall here.
        let (client, gateway_side) = tokio::io::duplex(256);
        let (upstream_side, upstream) = tokio::io::duplex(256);
        let relay = tokio::spawn(relay(gateway_side, upstream_side, Duration::from_secs(5)));
        tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(upstream);
            let mut buffer = [0u8; 4096];
            loop {
                match read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = write.shutdown().await;
        });
        let message: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let (mut read, mut write) = tokio::io::split(client);
        let sent = message.clone();
        let writer = tokio::spawn(async move {
            write.write_all(&sent).await.expect("write");
            write.shutdown().await.expect("shutdown");
        });
        let mut echoed = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut echoed))
            .await
            .expect("no deadlock")
            .expect("read");
        writer.await.expect("writer");
        assert!(echoed == message);
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
