//! parallax's daemon run through the library, in this process, with a telemetry sink that
//! records what the real one is given (then passes it on): the exact lateness of every probe
//! and every outcome's `ttfb`. And the server with a known delay the accuracy run probes.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use parallax::config::{self, ProcessEnv, View};
use parallax::daemon::{Daemon, Options};
use parallax::export::{
    MismatchEvent, ProbeReport, ResourceInfo, Sink, SpanRef, Telemetry, TelemetryOptions,
};

use crate::daemon_child::{write_config, Fleet};
use crate::procs::loopback;

/// At most this many samples are kept per run (a run is ~15 s at 1,000 probes/s).
const MAX_SAMPLES: usize = 200_000;

/// What the recorder saw while recording.
#[derive(Debug, Default)]
pub struct Samples {
    /// Lateness of every probe, ns.
    pub lateness_ns: Vec<u64>,
    /// (reported ttfb, the delay the server really waited for that connection when known) of
    /// every successful HTTP outcome.
    pub ttfb: Vec<(Duration, Option<Duration>)>,
    /// Probes that failed.
    pub failed: u64,
    /// Ticks skipped (previous probe still running).
    pub skipped: u64,
}

/// The real [`Telemetry`], with a tap.
struct Recorder {
    inner: Telemetry,
    /// The delay server's log, to pair each outcome with the delay it was served with.
    server_log: Option<ServerLog>,
    recording: AtomicBool,
    samples: Mutex<Samples>,
}

impl Recorder {
    fn samples(&self) -> MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for Recorder {
    fn probe(&self, report: &ProbeReport<'_>) -> Option<SpanRef> {
        let ProbeReport { outcome, lateness, .. } = *report;
        if self.recording.load(Ordering::Relaxed) {
            let mut s = self.samples();
            if s.lateness_ns.len() < MAX_SAMPLES {
                s.lateness_ns.push(u64::try_from(lateness.as_nanos()).unwrap_or(u64::MAX));
            }
            match (outcome.ok, outcome.timings.ttfb, outcome.local) {
                (true, Some(ttfb), Some(local)) if s.ttfb.len() < MAX_SAMPLES => {
                    // The server logged this connection before answering it, and the port
                    // cannot carry another request to it before this outcome is recorded.
                    let served = self.server_log.as_ref().and_then(|log| {
                        log.lock().unwrap_or_else(PoisonError::into_inner).remove(&local.port())
                    });
                    s.ttfb.push((ttfb, served));
                }
                (true, _, _) => {}
                (false, _, _) => s.failed += 1,
            }
        }
        self.inner.probe(report)
    }

    fn skipped(&self, view: &View) {
        if self.recording.load(Ordering::Relaxed) {
            self.samples().skipped += 1;
        }
        self.inner.skipped(view)
    }

    fn mismatch(&self, event: MismatchEvent<'_>) {
        self.inner.mismatch(event)
    }

    fn reload(&self, ok: bool) {
        self.inner.reload(ok)
    }

    fn forget_view(&self, view: &View) {
        self.inner.forget_view(view)
    }

    fn encode_metrics(&self) -> String {
        self.inner.encode_metrics()
    }

    fn shutdown(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.inner.shutdown(deadline)
    }
}

/// Runs the daemon on `fleet` (config written to `dir`) on a fresh multi-thread runtime (as
/// `parallax run` builds it), records for `window` after `warmup`, stops it.
pub fn run_daemon(
    dir: &Path,
    fleet: &Fleet,
    warmup: Duration,
    window: Duration,
    server_log: Option<ServerLog>,
) -> io::Result<Samples> {
    // The admin server is not started in process; the address only has to parse.
    let admin = loopback("127.0.0.1:9".parse().map_err(io::Error::other)?);
    write_config(dir, fleet, admin)?;
    let plan = config::load(dir).map_err(|e| io::Error::other(e.to_string()))?;
    // As `parallax run` builds it: `--workers` defaults to 1, `PARALLAX_WORKERS` sets it (the
    // daemon child of the CPU section inherits the same variable).
    let workers = std::env::var("PARALLAX_WORKERS").ok().and_then(|w| w.parse::<usize>().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.clamp(1, 64))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let options = TelemetryOptions { events: Box::new(io::sink()), ..TelemetryOptions::default() };
        let inner = Telemetry::with_options(&plan.export, ResourceInfo::default(), &ProcessEnv, options);
        let recorder = Arc::new(Recorder {
            inner,
            server_log,
            recording: AtomicBool::new(false),
            samples: Mutex::new(Samples::default()),
        });
        let daemon_options = Options { watch_interval: None, ..Options::default() };
        let daemon = Daemon::new(plan, recorder.clone(), daemon_options);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(daemon.run(None, async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(warmup).await;
        recorder.recording.store(true, Ordering::Relaxed);
        tokio::time::sleep(window).await;
        recorder.recording.store(false, Ordering::Relaxed);
        let _ = stop.send(());
        // Probes in flight finish within their timeout; the exporters flush within 5 s.
        let _ = tokio::time::timeout(Duration::from_secs(20), running).await;
        let samples = std::mem::take(&mut *recorder.samples());
        Ok(samples)
    })
}

/// Client port -> the delay the server really waited for that connection's request (request read
/// to response write).
pub type ServerLog = Arc<Mutex<HashMap<u16, Duration>>>;

/// A server that answers every request `delay` after reading it, on threads of its own (not
/// the daemon's runtime), and logs the delay it really waited per client port.
pub struct DelayServer {
    /// Where it listens.
    pub addr: SocketAddr,
    log: ServerLog,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl DelayServer {
    /// Starts `threads` accept-and-serve threads on `addr` (port 0: any).
    pub fn start(addr: SocketAddr, delay: Duration, threads: usize) -> io::Result<DelayServer> {
        let listener = TcpListener::bind(loopback(addr))?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (listener, log, stop) = (listener.try_clone()?, log.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((stream, peer)) = listener.accept() else { continue };
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let _ = serve(stream, peer, delay, &log);
                }
            }));
        }
        Ok(DelayServer { addr, log, stop, threads: handles })
    }

    /// Its log of delays served.
    pub fn log(&self) -> ServerLog {
        self.log.clone()
    }
}

impl Drop for DelayServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake every thread blocked in accept.
        for _ in 0..self.threads.len() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    delay: Duration,
    log: &Mutex<HashMap<u16, Duration>>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    // Bounded by the buffer: a request head larger than 4 KiB is dropped.
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return Ok(());
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let read_at = Instant::now();
    std::thread::sleep(delay);
    let waited = read_at.elapsed();
    log.lock().unwrap_or_else(PoisonError::into_inner).insert(peer.port(), waited);
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n")?;
    // Wait for the client to close (it reads the response and hangs up), as a server would.
    let _ = stream.read(&mut buf);
    Ok(())
}
