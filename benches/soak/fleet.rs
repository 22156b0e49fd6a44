//! The probed servers: real HTTP/1.1 servers (hyper) on 127.0.0.x, each following a phase
//! published on a `watch` channel. The healthy group's channel never leaves `Healthy`; the chaos
//! group's controller walks every server of the group through the same cycle at once (so a whole
//! third of the fleet is black-holed together):
//!
//! healthy → restart (listener closed, then bound again) → black-hole → garbage → healthy.
//!
//! The black-hole phase alternates between two kinds: connections accepted and never answered
//! (read and discarded until the prober gives up), and no `accept` at all on a listener whose
//! backlog (1) is full, so new SYNs are dropped and connects time out.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::procs::loopback;

/// What a server does right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `200 ok` to every request.
    Healthy,
    /// No listener: connections are refused.
    Restart,
    /// Accepts and never answers.
    BlackHoleHang,
    /// Never accepts; the backlog is full, SYNs are dropped.
    BlackHoleBacklog,
    /// Answers bytes that are not HTTP, or broken HTTP.
    Garbage,
}

impl Phase {
    /// The name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Restart => "restart",
            Phase::BlackHoleHang => "blackhole_hang",
            Phase::BlackHoleBacklog => "blackhole_backlog",
            Phase::Garbage => "garbage",
        }
    }

    /// Either black-hole kind.
    pub fn is_black_hole(self) -> bool {
        matches!(self, Phase::BlackHoleHang | Phase::BlackHoleBacklog)
    }
}

/// The chaos cycle: each phase and how long it lasts (80 s in all).
pub fn chaos_cycle(cycle: u64) -> [(Phase, Duration); 4] {
    let black_hole = if cycle.is_multiple_of(2) { Phase::BlackHoleHang } else { Phase::BlackHoleBacklog };
    [
        (Phase::Healthy, Duration::from_secs(20)),
        (Phase::Restart, Duration::from_secs(10)),
        (black_hole, Duration::from_secs(30)),
        (Phase::Garbage, Duration::from_secs(20)),
    ]
}

/// What the servers of a group did.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// `200 ok` responses.
    pub answered: AtomicU64,
    /// Connections held without an answer.
    pub hung: AtomicU64,
    /// Garbage answers.
    pub garbage: AtomicU64,
    /// Times a listener was bound.
    pub binds: AtomicU64,
}

/// When each phase of a controller began (relative to `start`).
#[derive(Debug, Default)]
pub struct Timeline {
    entries: Mutex<Vec<(Duration, Phase)>>,
}

impl Timeline {
    fn push(&self, at: Duration, phase: Phase) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push((at, phase));
    }

    /// Every (start offset, phase) so far.
    pub fn entries(&self) -> Vec<(Duration, Phase)> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The phases that overlap `[from, to)` (offsets from the start).
    pub fn phases_during(&self, from: Duration, to: Duration) -> Vec<Phase> {
        let entries = self.entries();
        let mut out = Vec::new();
        for (i, (at, phase)) in entries.iter().enumerate() {
            let end = entries.get(i + 1).map(|(next, _)| *next).unwrap_or(Duration::MAX);
            if *at < to && end > from {
                out.push(*phase);
            }
        }
        out
    }
}

/// Drives `tx` through the chaos cycle until `until`; records the timeline.
pub async fn chaos_controller(
    tx: watch::Sender<Phase>,
    start: Instant,
    until: Instant,
    timeline: Arc<Timeline>,
) {
    // Bounded: one round per phase, and the run is at most a day of 80 s cycles.
    'cycles: for cycle in 0..2_000u64 {
        for (phase, lasts) in chaos_cycle(cycle) {
            if Instant::now() >= until {
                break 'cycles;
            }
            timeline.push(start.elapsed(), phase);
            let _ = tx.send(phase);
            tokio::time::sleep(lasts.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }
    let _ = tx.send(Phase::Healthy);
}

/// Binds `addr` (SO_REUSEADDR: it is bound again right after being closed) with `backlog`,
/// retrying for a little while.
async fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(loopback(addr)).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
}

/// One server on `addr` following `phase` until its sender is dropped.
pub async fn server(addr: SocketAddr, mut phase: watch::Receiver<Phase>, counters: Arc<ServerCounters>) {
    // Bounded: one round per phase change; a day of 80 s cycles has under 5,000.
    for round in 0..100_000u64 {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Restart => {
                if phase.changed().await.is_err() {
                    return;
                }
            }
            Phase::BlackHoleBacklog => {
                // Listening, never accepting: the backlog fills with the first connections and
                // the kernel drops SYNs from then on.
                let _listener = match bind(addr, 1).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("soak: server {addr}: bind: {e}");
                        return;
                    }
                };
                counters.binds.fetch_add(1, Ordering::Relaxed);
                if phase.changed().await.is_err() {
                    return;
                }
            }
            Phase::Healthy | Phase::BlackHoleHang | Phase::Garbage => {
                let listener = match bind(addr, 1024).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("soak: server {addr}: bind: {e}");
                        return;
                    }
                };
                counters.binds.fetch_add(1, Ordering::Relaxed);
                // Dropped with the phase: every connection of the phase ends with it.
                let mut connections = JoinSet::new();
                let mut seq = round.wrapping_mul(7919);
                // Bounded: the phase ends, or this many connections (far more than a phase has).
                for _ in 0..10_000_000u64 {
                    tokio::select! {
                        changed = phase.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            break;
                        }
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            counters.accepted.fetch_add(1, Ordering::Relaxed);
                            while connections.try_join_next().is_some() {}
                            seq = seq.wrapping_add(1);
                            let c = counters.clone();
                            match now {
                                Phase::Healthy => connections.spawn(serve_ok(stream, c)),
                                Phase::BlackHoleHang => connections.spawn(hang(stream, c)),
                                _ => connections.spawn(garbage(stream, seq, c)),
                            };
                        }
                    }
                }
            }
        }
    }
}

/// HTTP/1.1 with keep-alive: `200 ok` to every request.
async fn serve_ok(stream: TcpStream, counters: Arc<ServerCounters>) {
    let service = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
        counters.answered.fetch_add(1, Ordering::Relaxed);
        async {
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from_static(b"ok\n")))
                    .unwrap_or_default(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// Reads and discards until the peer gives up (or the phase ends and drops the task).
async fn hang(mut stream: TcpStream, counters: Arc<ServerCounters>) {
    counters.hung.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 4096];
    // Bounded: EOF, an error, or 1 MiB read.
    for _ in 0..256 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads the request head, then answers one kind of garbage (by `seq`) and closes.
async fn garbage(mut stream: TcpStream, seq: u64, counters: Arc<ServerCounters>) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let read_head = async {
        // Bounded: the head's end, EOF, or 16 KiB.
        while head.len() < 16 << 10 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(Duration::from_secs(2), read_head).await, Ok(true)) {
        return;
    }
    counters.garbage.fetch_add(1, Ordering::Relaxed);
    let answer: Vec<u8> = match seq % 5 {
        // Random bytes.
        0 => random_bytes(seq, 512),
        // A status line that is not one.
        1 => b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        // A body shorter than its content-length, then close.
        2 => b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nshort".to_vec(),
        // A head that never ends (64 KiB of one header), then close.
        3 => {
            let mut v = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
            v.resize(v.len() + (64 << 10), b'a');
            v
        }
        // Not HTTP at all: an SSH banner.
        _ => b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&answer)).await;
    let _ = stream.shutdown().await;
}

/// `n` bytes of xorshift noise seeded by `seed`.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
