//! One connection, from accept to close: its first request head read under the head timeout,
//! a slot by the first path (health or general, general bounded per client address), then
//! hyper's HTTP/1 connection over [`AdminIo`], which replays that head and closes the connection
//! when a response is not written within the write timeout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::body::WriteProgress;
use super::routes::{is_health_path, Routes};
use super::Limits;

/// What every connection shares: the bounds, the routes, hyper's two configurations and the
/// slots.
pub(super) struct Server {
    limits: Limits,
    routes: Arc<Routes>,
    general: http1::Builder,
    health: http1::Builder,
    slots: Arc<Slots>,
}

impl Server {
    pub(super) fn new(limits: Limits, routes: Arc<Routes>) -> Server {
        Server {
            limits,
            routes,
            general: http1_builder(&limits, limits.header_read_timeout),
            health: http1_builder(&limits, limits.health_idle_timeout),
            slots: Arc::new(Slots::default()),
        }
    }
}

fn http1_builder(limits: &Limits, header_read_timeout: Duration) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_headers(limits.max_headers)
        // The read buffer bounds the head, and what a client pipelines: hyper reads no further
        // while a response is being written and the buffer holds the next request. Its floor is
        // 8 KiB. Bodies are never read.
        .max_buf_size(read_buffer(limits))
        .keep_alive(true);
    http
}

fn read_buffer(limits: &Limits) -> usize {
    (limits.max_head_bytes + 1024).max(8 * 1024)
}

/// Runs one accepted connection until it closes. `waiting` is cleared once it has a slot (the
/// accept loop closes the oldest connections still waiting when too many are).
pub(super) async fn run(
    mut stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    mut closing: watch::Receiver<bool>,
    waiting: Arc<AtomicBool>,
) {
    let limits = server.limits;
    let first = tokio::select! {
        first = tokio::time::timeout(limits.header_read_timeout, first_head(&mut stream, read_buffer(&limits))) => first,
        _ = closing.wait_for(|closing| *closing) => return,
    };
    // Closed, failed or too slow: closed without an answer, as hyper does.
    let Ok(Ok(Some(head))) = first else { return };
    // Claimed here or by the accept loop's eviction, never both.
    if waiting.compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let health = first_path(&head).is_some_and(is_health_path);
    let Some(slot) = server.slots.admit(peer.ip(), health, &limits) else {
        busy(stream, limits.health_write_timeout).await;
        return;
    };
    let health_only = slot.class == Class::Health;
    let (http, write_timeout) = match health_only {
        true => (&server.health, limits.health_write_timeout),
        false => (&server.general, limits.write_timeout),
    };
    let progress = Arc::new(WriteProgress::default());
    let io = AdminIo::new(stream, head.freeze(), write_timeout, Arc::clone(&progress));
    let routes = Arc::clone(&server.routes);
    let service = service_fn(move |request| {
        let response = routes.respond(&request, health_only);
        let progress = Arc::clone(&progress);
        async move { Ok::<_, Infallible>(response.await.map(|body| body.tracked(progress))) }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::select! {
        served = conn.as_mut() => {
            // Clients hanging up, timing out or sending garbage: routine for a server.
            if let Err(e) = served {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            drop(slot);
            return;
        }
        // A closed sender means the server is gone: close too.
        _ = closing.wait_for(|closing| *closing) => {}
        () = lifetime => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.close_grace, conn).await;
    drop(slot);
}

/// Reads until the first request head is complete (an empty line), the buffer is full (hyper
/// then answers 431) or the client closes (`None`).
async fn first_head(stream: &mut TcpStream, max: usize) -> io::Result<Option<BytesMut>> {
    let mut head = BytesMut::with_capacity(1024);
    loop {
        if head.len() >= max {
            return Ok(Some(head));
        }
        let room = (max - head.len()).min(4096);
        head.reserve(room);
        let n = (&mut *stream).take(room as u64).read_buf(&mut head).await?;
        if n == 0 {
            return Ok(None);
        }
        if memchr::memmem::find(&head, b"\r\n\r\n").is_some()
            || memchr::memmem::find(&head, b"\n\n").is_some()
        {
            return Ok(Some(head));
        }
    }
}

/// The path of the request line at the start of `head` (after any empty lines, as hyper
/// skips them), without its query; `None` if it is not an origin-form target.
fn first_path(head: &[u8]) -> Option<&str> {
    let start = head.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let line = &head[start..];
    let line = &line[..memchr::memchr(b'\n', line).unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?;
    let target = line.split(' ').nth(1)?;
    let path = target.split('?').next()?;
    path.starts_with('/').then_some(path)
}

/// No slot: `503` with `Retry-After`, then the connection is closed (after a bounded wait for
/// the client to read it, so that unread request bytes do not turn the close into a reset that
/// loses the answer).
async fn busy(mut stream: TcpStream, within: Duration) {
    const BODY: &str = "busy: too many admin connections (from this address); retry later\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         cache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(within, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Which pool a slot is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The first request was a health path: reserved slots, health paths only.
    Health,
    /// Anything else.
    General,
}

/// The slots in use: general ones per client address, health ones.
#[derive(Debug, Default)]
struct Slots {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    health: usize,
    general: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Slots {
    /// A slot for a connection from `client` whose first request is (`health`) or is not a
    /// health path; none when its pool (or the client's share of the general one) is full.
    fn admit(self: &Arc<Self>, client: IpAddr, health: bool, limits: &Limits) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let class = if health && counts.health < limits.health_connections {
            counts.health += 1;
            Class::Health
        } else {
            let mine = counts.per_client.get(&client).copied().unwrap_or(0);
            if counts.general >= limits.max_connections || mine >= limits.max_connections_per_client {
                return None;
            }
            counts.general += 1;
            *counts.per_client.entry(client).or_insert(0) += 1;
            Class::General
        };
        Some(Slot { slots: Arc::clone(self), class, client })
    }
}

/// A slot held; given back when dropped.
#[derive(Debug)]
struct Slot {
    slots: Arc<Slots>,
    class: Class,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match self.class {
            Class::Health => counts.health = counts.health.saturating_sub(1),
            Class::General => {
                counts.general = counts.general.saturating_sub(1);
                if let Some(n) = counts.per_client.get_mut(&self.client) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        counts.per_client.remove(&self.client);
                    }
                }
            }
        }
    }
}

/// The connection's socket as hyper sees it: the first head read before hyper took over,
/// then the stream; and a deadline on each response's writing, armed at its first write and
/// disarmed once its whole body has been flushed.
struct AdminIo {
    stream: TcpStream,
    replay: Bytes,
    write_timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    progress: Arc<WriteProgress>,
}

impl AdminIo {
    fn new(
        stream: TcpStream,
        replay: Bytes,
        write_timeout: Duration,
        progress: Arc<WriteProgress>,
    ) -> AdminIo {
        AdminIo { stream, replay, write_timeout, deadline: None, progress }
    }

    fn arm(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.write_timeout)));
        }
    }

    /// A write is pending: `Ready(Err)` once the deadline has passed.
    fn overdue<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the response was not written within the write timeout",
            ))),
            _ => Poll::Pending,
        }
    }
}

impl AsyncRead for AdminIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdminIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.arm();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Pending => this.overdue(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.arm();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.overdue(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes the socket only once its own buffer is written out.
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) && !this.progress.body_open() {
            this.deadline = None;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_path_is_the_request_lines_without_its_query() {
        assert_eq!(first_path(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), Some("/healthz"));
        assert_eq!(first_path(b"\r\n\r\nHEAD /readyz?verbose HTTP/1.1\r\n\r\n"), Some("/readyz"));
        assert_eq!(first_path(b"GET http://a/healthz HTTP/1.1\r\n\r\n"), None);
        assert_eq!(first_path(b"garbage"), None);
        assert_eq!(first_path(b""), None);
    }

    #[test]
    fn general_slots_are_bounded_per_client_and_health_slots_are_apart() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_client: 2,
            health_connections: 1,
            ..Limits::default()
        };
        let slots = Arc::new(Slots::default());
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let a1 = slots.admit(a, false, &limits).expect("a 1");
        let _a2 = slots.admit(a, false, &limits).expect("a 2");
        assert!(slots.admit(a, false, &limits).is_none(), "a third from one client");
        let _b1 = slots.admit(b, false, &limits).expect("b 1");
        assert!(slots.admit(b, false, &limits).is_none(), "general full");
        let h = slots.admit(a, true, &limits).expect("the health slot");
        assert_eq!(h.class, Class::Health);
        assert!(slots.admit(b, true, &limits).is_none(), "health full and general full");
        drop(a1);
        let g = slots.admit(b, true, &limits).expect("a health path falls back to a general slot");
        assert_eq!(g.class, Class::General);
        drop((g, h));
        let counts = slots.counts.lock().expect("lock");
        assert_eq!((counts.health, counts.general), (0, 2));
    }
}
