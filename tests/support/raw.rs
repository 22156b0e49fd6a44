//! A scripted TCP server for hostile cases (what to write, when to close or reset, never to
//! answer...), and a listener whose full accept queue drops SYNs (a connect timeout without
//! root or firewall rules).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

use super::http::lock;
use super::{accept_loop, listen, Task};

/// A read step gives up after this long without data.
const READ_LIMIT: Duration = Duration::from_secs(5);
/// A read step keeps at most this many bytes.
const READ_MAX: usize = 256 * 1024;
/// `Hang` and `Endless` never last longer than this.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// One step of a connection's script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Read until the end of an HTTP head (`\r\n\r\n`), EOF, 256 KiB or 5 s.
    ReadHead,
    /// Read one chunk (whatever arrives first: a ClientHello...), or nothing after 5 s.
    ReadSome,
    /// Write these bytes.
    Write(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Write these bytes one at a time, pausing between bytes (slowloris).
    Trickle(Vec<u8>, Duration),
    /// Write `chunk` again and again until the peer goes away, `max_bytes` are written, or 30 s
    /// pass (an endless body, endless headers).
    Endless {
        /// What is repeated.
        chunk: Vec<u8>,
        /// Stop after this many bytes.
        max_bytes: u64,
    },
    /// Close gracefully: FIN, then drain what the peer still sends (so the kernel does not turn
    /// the close into a reset), for at most 1 s.
    Close,
    /// Reset: `SO_LINGER` 0, then close (RST).
    Reset,
    /// Keep the connection open and silent (for at most 30 s, or until the server is dropped).
    Hang,
}

/// What happened on one connection.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// Every byte read by read steps.
    pub received: Vec<u8>,
    /// Bytes written (including by `Endless` and `Trickle`).
    pub written: u64,
    /// The script ran to its end (or the peer went away).
    pub finished: bool,
}

/// A scripted server: every connection runs the same script. Dropping it stops it.
pub struct RawServer {
    /// The bound address.
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Conn>>>,
    _task: Task,
}

impl RawServer {
    /// Listens on `ip` (any free port) and runs `script` on every connection.
    pub async fn start(ip: IpAddr, script: Vec<Step>) -> RawServer {
        let listener = listen(ip, 0).await;
        let addr = listener.local_addr().expect("local addr");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let record = conns.clone();
        let script = Arc::new(script);
        let task = accept_loop(listener, move |stream, peer| {
            let index = {
                let mut conns = lock(&record);
                conns.push(Conn { peer: Some(peer), ..Conn::default() });
                conns.len() - 1
            };
            let (record, script) = (record.clone(), script.clone());
            async move { run(stream, &script, &record, index).await }
        });
        RawServer { addr, conns, _task: task }
    }

    /// Every connection so far.
    pub fn connections(&self) -> Vec<Conn> {
        lock(&self.conns).clone()
    }
}

async fn run(mut stream: TcpStream, script: &[Step], record: &Mutex<Vec<Conn>>, index: usize) {
    let mut buf = vec![0u8; 16 * 1024];
    for step in script {
        let alive = match step {
            Step::ReadHead => {
                let mut head = Vec::new();
                let alive =
                    read_until(&mut stream, &mut buf, &mut head, |h| h.windows(4).any(|w| w == b"\r\n\r\n"))
                        .await;
                lock(record)[index].received.extend_from_slice(&head);
                alive
            }
            Step::ReadSome => match timeout(READ_LIMIT, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    lock(record)[index].received.extend_from_slice(&buf[..n]);
                    true
                }
                Ok(_) => false,
                Err(_) => true,
            },
            Step::Write(bytes) => write(&mut stream, bytes, record, index).await,
            Step::Sleep(d) => {
                tokio::time::sleep(*d).await;
                true
            }
            Step::Trickle(bytes, pause) => {
                let mut alive = true;
                for b in bytes {
                    if !write(&mut stream, std::slice::from_ref(b), record, index).await {
                        alive = false;
                        break;
                    }
                    tokio::time::sleep(*pause).await;
                }
                alive
            }
            Step::Endless { chunk, max_bytes } => {
                let until = Instant::now() + STEP_LIMIT;
                let mut sent = 0u64;
                let mut alive = true;
                while sent < *max_bytes && Instant::now() < until {
                    if !write(&mut stream, chunk, record, index).await {
                        alive = false;
                        break;
                    }
                    sent += chunk.len() as u64;
                }
                alive
            }
            Step::Close => {
                let _ = stream.shutdown().await;
                let until = Instant::now() + Duration::from_secs(1);
                // Drain until EOF, an error or 1 s, so unread bytes do not turn the close into RST.
                while let Ok(Ok(n)) = tokio::time::timeout_at(until, stream.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                }
                false
            }
            Step::Reset => {
                let _ = stream.set_zero_linger();
                false
            }
            Step::Hang => {
                tokio::time::sleep(STEP_LIMIT).await;
                true
            }
        };
        if !alive {
            break;
        }
    }
    lock(record)[index].finished = true;
    drop(stream);
}

/// Reads into `out` until `done(out)`, EOF, `READ_MAX` bytes or `READ_LIMIT` without data.
/// Returns whether the peer is still there.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    while !done(out) && out.len() < READ_MAX {
        match timeout(READ_LIMIT, stream.read(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return true,
        }
    }
    true
}

async fn write(stream: &mut TcpStream, bytes: &[u8], record: &Mutex<Vec<Conn>>, index: usize) -> bool {
    match timeout(READ_LIMIT, stream.write_all(bytes)).await {
        Ok(Ok(())) => {
            lock(record)[index].written += bytes.len() as u64;
            true
        }
        _ => false,
    }
}

/// A listener that never accepts, with its accept queue already full: Linux drops further SYNs,
/// so connecting to it times out (what a firewall that drops packets looks like).
pub struct FullBacklog {
    /// The address whose SYNs are dropped.
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<TcpStream>,
}

impl FullBacklog {
    /// Listens on `ip` with backlog 0 and fills the queue (at most 8 connections, 300 ms each).
    pub async fn start(ip: IpAddr) -> FullBacklog {
        assert!(ip.is_loopback(), "tests bind loopback addresses only, not {ip}");
        let socket = TcpSocket::new_v4().expect("tcp socket");
        socket.bind(SocketAddr::new(ip, 0)).expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let mut fillers = Vec::new();
        let mut full = false;
        for _ in 0..8 {
            match timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                Ok(Err(e)) => panic!("filling the backlog of {addr}: {e}"),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "the accept queue of {addr} never filled: SYNs are not being dropped");
        FullBacklog { addr, _listener: listener, _fillers: fillers }
    }
}

/// A listener whose every connection is reset (RST) as soon as the kernel hands it over: a
/// dedicated OS thread blocks in `accept`, so the reset does not wait for a task to be scheduled
/// and usually lands before the prober first looks at its new socket. Dropping it stops the
/// thread.
pub struct ResetOnAccept {
    /// The address whose connections are reset.
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    resets: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ResetOnAccept {
    /// Listens on `ip` (any free port).
    pub fn start(ip: IpAddr) -> ResetOnAccept {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        assert!(ip.is_loopback(), "tests bind loopback addresses only, not {ip}");
        let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let resets = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), resets.clone());
        let thread = std::thread::spawn(move || {
            for _ in 0..super::MAX_CONNECTIONS {
                let Ok((stream, _)) = listener.accept() else { continue };
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                // SO_LINGER 0: close sends RST instead of FIN.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        ResetOnAccept { addr, stop, resets, thread: Some(thread) }
    }

    /// Connections reset so far.
    pub fn resets(&self) -> usize {
        self.resets.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ResetOnAccept {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the blocking accept with one last connection, then wait for the thread.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
