//! The I/O edges of an HTTP exchange: a stream wrapper that stamps, on tokio's monotonic clock,
//! when the request was fully written and when the response began, and keeps the first bytes the
//! peer sent, for the HTTP and gRPC layers' timings and error classification. The TLS layer
//! keeps a handshake's first bytes with the same [`Prefix`].
//!
//! Over HTTP/2 "the request was written" and "the response began" are frame events, not the
//! first or last write: SETTINGS frames cross the request in both directions.
//! A small frame scanner follows the frame boundaries of each direction to find them.
//!
//! Over HTTP/1 the edge also bounds the response head: hyper skips interim (1xx) responses
//! inside its parser and applies its head limits to each message alone, so a server repeating
//! `100 Continue` with 60 KB of headers could make one probe read gigabytes before its deadline.
//! A [`HeadScanner`] follows the heads as they are read, all of them together counted against
//! [`MAX_HEADER_BYTES`] and [`MAX_INTERIM_RESPONSES`], and fails the read that breaks a bound.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::MAX_HEADER_BYTES;

/// The most interim (1xx) responses a probe reads before the final response head. Clients
/// see one `100 Continue` or a `103 Early Hints` or two; 32 leaves room for `102 Processing`
/// repeated while a slow request runs.
pub const MAX_INTERIM_RESPONSES: u32 = 32;

/// The most header fields one HTTP/1 response head may have (hyper's limit, set explicitly).
pub const MAX_HEADER_FIELDS: usize = 100;

/// How many of the first response bytes are kept for classification.
const FIRST_BYTES_KEPT: usize = 16;

/// The first `N` bytes a peer sent, kept as they arrive; later bytes only pass by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Prefix<N> {
    /// Keeps what of `new` still fits.
    pub(crate) fn keep(&mut self, new: &[u8]) {
        let take = (N - self.len).min(new.len());
        self.bytes[self.len..self.len + take].copy_from_slice(&new[..take]);
        self.len += take;
    }

    /// The bytes kept so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Default for Prefix<N> {
    fn default() -> Prefix<N> {
        Prefix { bytes: [0; N], len: 0 }
    }
}

/// What the I/O edge saw: when the request went out, when the answer began, what it began with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edges {
    /// When the request was fully written. HTTP/1: the last write or flush that completed
    /// before the answer. HTTP/2: the write that carried the end of the request stream
    /// (SETTINGS frames cross the request, so "the last write" means nothing there).
    request_written: Option<Instant>,
    /// When the first response byte was read. HTTP/1: the first read returning bytes after
    /// `request_written`. HTTP/2: the read that carried the response's HEADERS frame.
    response_started: Option<Instant>,
    /// The first bytes the peer sent (at most [`FIRST_BYTES_KEPT`]).
    first_bytes: Prefix<FIRST_BYTES_KEPT>,
    /// Bytes read in all.
    bytes_read: u64,
    /// HTTP/1: a write happened that no flush has completed yet.
    unflushed: bool,
    /// HTTP/1: the response heads read so far.
    heads: HeadScanner,
}

impl Edges {
    /// Request fully written to the first response byte; zero until both happened.
    pub(crate) fn ttfb(&self) -> Duration {
        match (self.request_written, self.response_started) {
            (Some(written), Some(started)) => started.saturating_duration_since(written),
            _ => Duration::ZERO,
        }
    }

    /// Whether the response began (over HTTP/2: its HEADERS frame arrived, not just SETTINGS).
    pub(crate) fn response_started(&self) -> bool {
        self.response_started.is_some()
    }

    /// The first bytes the peer sent, at most [`FIRST_BYTES_KEPT`].
    pub(crate) fn first_bytes(&self) -> &[u8] {
        self.first_bytes.as_slice()
    }

    /// Bytes read from the peer in all.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// HTTP/1: what the response heads looked like so far.
    pub(crate) fn heads(&self) -> &HeadScanner {
        &self.heads
    }
}

/// The [`Edges`] of one connection, shared by the [`TimedIo`] that records them (driven by hyper,
/// maybe in a task of its own) and the exchange that reads them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedEdges(Arc<Mutex<Edges>>);

impl SharedEdges {
    /// The edges so far. A panic elsewhere while they were locked leaves them usable: they are
    /// plain values, valid after any write.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Edges> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An I/O stream that records [`Edges`] on the monotonic clock.
pub(crate) struct TimedIo<S> {
    inner: S,
    edges: SharedEdges,
    /// HTTP/2 only: frame boundaries of what we write and of what we read.
    h2: Option<(FrameScanner, FrameScanner)>,
}

impl<S> TimedIo<S> {
    /// Wraps `inner`; `h2` when the connection will speak HTTP/2 (prior knowledge or ALPN).
    pub(crate) fn new(inner: S, h2: bool) -> (TimedIo<S>, SharedEdges) {
        let edges = SharedEdges::default();
        let h2 = h2.then(|| (FrameScanner::client_preface(), FrameScanner::default()));
        (TimedIo { inner, edges: edges.clone(), h2 }, edges)
    }

    fn wrote(&mut self, written: &[&[u8]]) {
        let now = Instant::now();
        if let Some((out, _)) = &mut self.h2 {
            let mut request_end = false;
            for chunk in written {
                out.feed(chunk, |event| {
                    if let FrameEvent::End(head) = event {
                        request_end |= head.stream != 0
                            && matches!(head.kind, FRAME_DATA | FRAME_HEADERS)
                            && head.flags & FLAG_END_STREAM != 0;
                    }
                });
            }
            let mut e = self.edges.lock();
            if request_end && e.request_written.is_none() {
                e.request_written = Some(now);
            }
        } else {
            let mut e = self.edges.lock();
            e.request_written = Some(now);
            e.response_started = None;
            e.unflushed = true;
        }
    }

    fn flushed(&mut self) {
        if self.h2.is_some() {
            return;
        }
        // Over TLS the request may only leave in the flush; a flush with no write before it
        // (hyper flushes often) must not move the edge.
        let mut e = self.edges.lock();
        if e.unflushed {
            e.request_written = Some(Instant::now());
            e.response_started = None;
            e.unflushed = false;
        }
    }

    fn read(&mut self, new: &[u8]) {
        let now = Instant::now();
        let mut response_headers = false;
        if let Some((_, inbound)) = &mut self.h2 {
            inbound.feed(new, |event| {
                if let FrameEvent::Start(head) = event {
                    response_headers |= head.stream != 0 && head.kind == FRAME_HEADERS;
                }
            });
        }
        let h2 = self.h2.is_some();
        let mut e = self.edges.lock();
        if e.response_started.is_none() && (!h2 || response_headers) {
            e.response_started = Some(now);
        }
        e.first_bytes.keep(new);
        e.bytes_read += new.len() as u64;
        if !h2 {
            e.heads.feed(new);
        }
    }

    /// Whether the response heads broke a bound ([`HeadScanner::broken`]).
    fn head_broken(&self) -> bool {
        self.edges.lock().heads.broken().is_some()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.head_broken() {
            return Poll::Ready(Err(head_limit_error()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.read(new);
                if self.head_broken() {
                    // hyper never sees the bytes past the bound: the exchange ends here, and the
                    // exchange names the failure from the scanner (`HeadScanner::broken`).
                    buf.set_filled(before);
                    return Poll::Ready(Err(head_limit_error()));
                }
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                self.wrote(&[&buf[..n]]);
            }
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                // Only the first `n` bytes of the slices went out.
                let mut left = n;
                let mut written = Vec::with_capacity(bufs.len());
                for b in bufs {
                    if left == 0 {
                        break;
                    }
                    let take = left.min(b.len());
                    written.push(&b[..take]);
                    left -= take;
                }
                self.wrote(&written);
            }
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            self.flushed();
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The read error that ends an exchange whose response head broke a bound.
fn head_limit_error() -> io::Error {
    io::Error::other("the response head broke its bound")
}

/// A bound the response heads broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadBound {
    /// All heads together (interim ones included) passed [`MAX_HEADER_BYTES`].
    Bytes,
    /// More than [`MAX_INTERIM_RESPONSES`] interim responses.
    Interim,
}

/// Follows HTTP/1 response heads through the bytes read, as hyper's parser (httparse) delimits
/// them: empty lines before a status line are skipped, a line ends at LF (CR before it
/// optional), an empty line ends the head. A head whose status is 1xx (but not `101`, which
/// ends HTTP/1) is interim and another head follows; the scanner stops at the final head, or
/// at a status line it cannot read (hyper then names it malformed).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScanner {
    /// Bytes of every head so far (skipped empty lines included).
    bytes: usize,
    /// Interim responses seen.
    interim: u32,
    /// Header fields of the head being read.
    fields: usize,
    /// The first bytes of the current head's status line (`HTTP/1.1 100`).
    status_line: Prefix<12>,
    /// Bytes of the current line so far (0 at a line start).
    line_len: usize,
    /// Whether the current line has a byte other than CR.
    line_has_text: bool,
    /// Whether the current head's status line was read.
    in_head: bool,
    /// The final head ended: the rest is body, not scanned.
    done: bool,
    /// The bound broken, if any.
    broken: Option<HeadBound>,
}

impl HeadScanner {
    /// Follows `bytes`, stopping at the end of the final head or at a broken bound.
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done || self.broken.is_some() {
                return;
            }
            self.bytes += 1;
            if self.bytes > MAX_HEADER_BYTES {
                self.broken = Some(HeadBound::Bytes);
                return;
            }
            if b != b'\n' {
                if !self.in_head && self.line_len < 12 {
                    self.status_line.keep(&[b]);
                }
                self.line_len += 1;
                self.line_has_text |= b != b'\r';
                continue;
            }
            let has_text = self.line_has_text;
            self.line_len = 0;
            self.line_has_text = false;
            match (self.in_head, has_text) {
                // An empty line before the status line: skipped, as httparse does.
                (false, false) => self.status_line = Prefix::default(),
                (false, true) => self.in_head = true,
                (true, true) => self.fields += 1,
                (true, false) => self.head_ended(),
            }
        }
    }

    /// The empty line after a head: interim, or the final head.
    fn head_ended(&mut self) {
        let interim = match self.status_line.as_slice() {
            [b'H', b'T', b'T', b'P', b'/', _, b'.', _, b' ', b'1', d1, d2] => {
                d1.is_ascii_digit() && d2.is_ascii_digit() && (*d1, *d2) != (b'0', b'1')
            }
            _ => false,
        };
        if !interim {
            self.done = true;
            return;
        }
        self.interim += 1;
        if self.interim > MAX_INTERIM_RESPONSES {
            self.broken = Some(HeadBound::Interim);
        }
        self.in_head = false;
        self.fields = 0;
        self.status_line = Prefix::default();
    }

    /// The bound the heads broke, if any.
    pub(crate) fn broken(&self) -> Option<HeadBound> {
        self.broken
    }

    /// Bytes of all heads read so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Interim responses read so far.
    pub(crate) fn interim(&self) -> u32 {
        self.interim
    }

    /// Header fields of the head being read (or of the final head, once read).
    pub(crate) fn fields(&self) -> usize {
        self.fields
    }
}

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which the client writes before its first frame.
const CLIENT_PREFACE_BYTES: usize = 24;

/// The 9-byte header of an HTTP/2 frame, as far as timing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameEvent {
    /// A frame header was seen (its first byte arrived in this chunk or an earlier one).
    Start(FrameHead),
    /// The last byte of the frame's payload was seen.
    End(FrameHead),
}

/// Follows HTTP/2 frame boundaries through one direction of a connection, chunk by chunk.
#[derive(Debug, Default)]
struct FrameScanner {
    preface_left: usize,
    head: [u8; 9],
    head_len: usize,
    payload_left: usize,
    current: Option<FrameHead>,
}

impl FrameScanner {
    /// The client's outbound direction, which starts with the connection preface.
    fn client_preface() -> FrameScanner {
        FrameScanner { preface_left: CLIENT_PREFACE_BYTES, ..FrameScanner::default() }
    }

    fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(FrameEvent)) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let Some(head) = self.current else {
                let n = (9 - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == 9 {
                    let h = self.head;
                    let head = FrameHead {
                        kind: h[3],
                        flags: h[4],
                        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                    };
                    self.payload_left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    self.head_len = 0;
                    on(FrameEvent::Start(head));
                    if self.payload_left == 0 {
                        on(FrameEvent::End(head));
                    } else {
                        self.current = Some(head);
                    }
                }
                continue;
            };
            let n = self.payload_left.min(bytes.len());
            self.payload_left -= n;
            bytes = &bytes[n..];
            if self.payload_left == 0 {
                self.current = None;
                on(FrameEvent::End(head));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> HeadScanner {
        let mut s = HeadScanner::default();
        for c in chunks {
            s.feed(c);
        }
        s
    }

    #[test]
    fn head_scanner_skips_interim_heads_and_stops_at_the_final_one() {
        let wire: &[u8] = b"\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\n\nHTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\n\r\n\n\nbody";
        for size in [1, 3, 7, wire.len()] {
            let chunks: Vec<&[u8]> = wire.chunks(size).collect();
            let s = scan(&chunks);
            assert!(s.done, "chunks of {size}");
            assert_eq!((s.interim(), s.fields(), s.broken()), (2, 2, None), "chunks of {size}");
            assert_eq!(s.bytes(), wire.len() - b"\n\nbody".len(), "chunks of {size}");
        }
        // 101 ends HTTP/1; an unreadable status line is left to hyper.
        assert!(scan(&[b"HTTP/1.1 101 Switching Protocols\r\n\r\n"]).done);
        assert!(scan(&[b"SSH-2.0-x\r\n\r\n"]).done);
    }

    #[test]
    fn head_scanner_bounds_interim_heads_in_count_and_bytes() {
        let s = scan(&[&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(40)]);
        assert_eq!(s.broken(), Some(HeadBound::Interim));
        assert_eq!(s.interim(), MAX_INTERIM_RESPONSES + 1);
        let mut big = b"HTTP/1.1 103 Early Hints\r\n".to_vec();
        big.extend(format!("link: {}\r\n\r\n", "a".repeat(40_000)).bytes());
        let s = scan(&[&big, &big]);
        assert_eq!(s.broken(), Some(HeadBound::Bytes));
        assert_eq!(s.bytes(), MAX_HEADER_BYTES + 1);
    }

    #[test]
    fn frame_scanner_follows_frames_across_chunks() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty, stream 0
        wire.extend([0, 0, 3, 0x1, 0x4, 0, 0, 0, 1, 1, 2, 3]); // HEADERS, stream 1
        wire.extend([0, 0, 2, 0x0, 0x1, 0x80, 0, 0, 1, 9, 9]); // DATA END_STREAM, R bit set
        let settings = FrameHead { kind: 0x4, flags: 0, stream: 0 };
        let headers = FrameHead { kind: 0x1, flags: 0x4, stream: 1 };
        let data = FrameHead { kind: 0x0, flags: 0x1, stream: 1 };
        let expected = vec![
            FrameEvent::Start(settings),
            FrameEvent::End(settings),
            FrameEvent::Start(headers),
            FrameEvent::End(headers),
            FrameEvent::Start(data),
            FrameEvent::End(data),
        ];
        for chunk_size in [1, 2, 5, 7, 24, wire.len()] {
            let mut scanner = FrameScanner::client_preface();
            let mut events = Vec::new();
            for chunk in wire.chunks(chunk_size) {
                scanner.feed(chunk, |e| events.push(e));
            }
            assert_eq!(events, expected, "chunks of {chunk_size}");
        }
    }
}
