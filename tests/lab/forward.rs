//! Reaching the host's API server from inside a lab namespace: the API server listens on the
//! host's 127.0.0.1, and a lab namespace has no route to the host. A [`Forwarder`] binds
//! 127.0.0.1:P inside the namespace (a short-lived thread enters it with `setns(2)`, binds, and
//! exits: a socket keeps the namespace it was created in) and hands each connection to
//! host-namespace threads that connect to the API server and copy both ways.
//! [`Forwarder::kubeconfig`] writes the ServiceAccount's kubeconfig with the port replaced by P:
//! the serving certificate is for 127.0.0.1, so TLS is verified as usual. It accepts at most
//! [`MAX_FORWARDED`] connections and is closed when dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections the forwarder accepts at most (the daemon opens one per watch, and reconnects).
pub const MAX_FORWARDED: usize = 64;

/// A TCP forwarder from 127.0.0.1:`port` inside a network namespace to `upstream` in the host's.
/// Dropping it stops the accept loop and closes every forwarded connection.
pub struct Forwarder {
    /// The port it listens on, inside the namespace.
    pub port: u16,
    /// Where it connects, in the host's namespace.
    pub upstream: SocketAddr,
    /// Connections accepted so far (failure messages show it).
    pub accepted: Arc<AtomicUsize>,
    /// Set to end the accept loop.
    stop: Arc<AtomicBool>,
    /// Every forwarded connection's two sockets, shut down on drop.
    streams: Arc<Mutex<Vec<TcpStream>>>,
    /// The accept loop's thread.
    accept: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Binds in `netns` and starts the accept loop. After [`MAX_FORWARDED`] connections the loop
    /// ends and drops the listener: later connections are refused (the failure messages show the
    /// count).
    pub fn start(netns: &str, upstream: SocketAddr) -> Forwarder {
        let listener = listen_in(netns);
        let port = listener.local_addr().expect("the forwarder's address").port();
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let (accepted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (a, s, st) = (accepted.clone(), stop.clone(), streams.clone());
        let accept = std::thread::spawn(move || accept_loop(&listener, upstream, &a, &s, &st));
        Forwarder { port, upstream, accepted, stop, streams, accept: Some(accept) }
    }

    /// Writes `kubeconfig` (whose server is `server_url`, the upstream) to `to` with the server
    /// replaced by this forwarder's `https://127.0.0.1:P`, and returns `to`.
    pub fn kubeconfig(&self, kubeconfig: &Path, server_url: &str, to: PathBuf) -> PathBuf {
        let text = std::fs::read_to_string(kubeconfig).expect("read the parallax kubeconfig");
        let rewritten = text.replace(server_url, &format!("https://127.0.0.1:{}", self.port));
        assert_ne!(text, rewritten, "the kubeconfig names {server_url}");
        std::fs::write(&to, rewritten).expect("write the namespace's kubeconfig");
        to
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // Shutting a socket down ends the copies blocked on it.
        if let Ok(streams) = self.streams.lock() {
            for stream in streams.iter() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A listener on 127.0.0.1 (a free port) inside the network namespace `netns` (`ip netns`'s
/// `/run/netns/<netns>`), made by a thread that enters the namespace and exits.
fn listen_in(netns: &str) -> TcpListener {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns(2) with a namespace file descriptor that stays open for the call; it moves
        // only this thread, which binds one socket and exits, into the namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind 127.0.0.1:0 in {path}: {e}"))
    })
    .join()
    .unwrap_or_else(|_| panic!("the thread binding in {netns} panicked (above)"))
}

/// Accepts until `stop` or [`MAX_FORWARDED`] connections, each copied both ways to `upstream`.
fn accept_loop(
    listener: &TcpListener,
    upstream: SocketAddr,
    accepted: &AtomicUsize,
    stop: &AtomicBool,
    streams: &Mutex<Vec<TcpStream>>,
) {
    while !stop.load(Ordering::Relaxed) && accepted.load(Ordering::Relaxed) < MAX_FORWARDED {
        let inbound = match listener.accept() {
            Ok((inbound, _)) => inbound,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        // A failed upstream connect closes the inbound connection: the daemon sees a reset.
        let Ok(outbound) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else { continue };
        let _ = inbound.set_nonblocking(false);
        let pairs =
            [(inbound.try_clone(), outbound.try_clone()), (outbound.try_clone(), inbound.try_clone())];
        if let Ok(mut kept) = streams.lock() {
            kept.extend([inbound, outbound]);
        }
        for pair in pairs {
            if let (Ok(from), Ok(to)) = pair {
                std::thread::spawn(move || copy(from, to));
            }
        }
    }
}

/// Copies `from` to `to` until either ends, then half-closes `to`.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
