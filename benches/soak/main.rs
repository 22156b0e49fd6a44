//! The soak benchmark (issue 18): `parallax run` as a child process for an hour (configurable)
//! with 1,000 views against servers that misbehave in turn, a collector that flaps and a reload
//! every minute; it reports whether memory and descriptors stay flat, whether the healthy views
//! keep their schedule, and whether any view is lost.
//!
//! ```text
//! cargo bench --bench soak                          # one hour
//! PARALLAX_SOAK_SECS=180 cargo bench --bench soak   # a 3-minute smoke run
//! ```
//!
//! - 500 targets, each a client and a checker view (1,000 views, interval 2 s, timeout 1 s), plus
//!   a churned file of 4 targets and one view whose interval changes (9 views).
//! - Healthy group: 334 targets (668 views) on 4 always-healthy hyper servers, 127.0.0.11-14.
//! - Chaos group: 166 targets (332 views, a third of the fleet) on 4 servers, 127.0.0.21-24,
//!   all in the same phase: healthy 20 s → restart (closed 10 s) → black-hole 30 s (accepting
//!   and never answering, or a full backlog, in turn) → garbage 20 s (`fleet.rs`).
//! - An OTLP/HTTP collector (127.0.0.6) that is up 30 s, closed 30 s, up 30 s, `503` 30 s
//!   (`collector.rs`); the spans it receives give the healthy views' per-probe lateness.
//! - Every 60 s: the churn file is rewritten (one target out, one in, one interval changed) and
//!   SIGHUP sent; the reload counts as ok when `generation` advanced, `last_reload.ok` is true
//!   and `/api/v1/status` lists exactly the configured views.
//! - Every 10 s: VmRSS and open fds from `/proc`, `/metrics` (lateness histogram, probes per
//!   view, export failures, reloads).
//!
//! The figures go to stdout and to `target/bench-soak/results.json`.
//!
//! Network safety: every address dialed or bound is a 127.0.0.x address (checked in
//! `procs::loopback`); every loop is bounded in count and time; the child is killed when its
//! guard drops, on panic, and on Ctrl-C.

mod collector;
mod daemon;
mod fleet;
// The macro bench's: one module for children, /proc and loopback-only addressing.
#[allow(dead_code)]
#[path = "../macro/procs.rs"]
mod procs;
mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;
use tokio::sync::watch;

use crate::daemon::{Config, Daemon, Layout, Metrics, ViewKey, INTERVAL};
use crate::fleet::{Phase, ServerCounters, Timeline};
use crate::procs::{fd_count, free_port, loadavg, loopback, rss_and_hwm_kib, thread_count};

const ADMIN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const COLLECTOR_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
/// How often the process is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How often the configuration is reloaded.
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// How long a reload may take to show in the status.
const RELOAD_WITHIN: Duration = Duration::from_secs(20);
/// Samples before this are warm-up (slopes and lateness leave them out), at most a quarter of
/// the run.
const WARM_UP: Duration = Duration::from_secs(120);

/// One sample of the process.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the daemon's start.
    t: f64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    metrics: Metrics,
    metrics_bytes: usize,
    metrics_ms: f64,
}

/// Lost-view bookkeeping.
#[derive(Debug, Default)]
struct Lost {
    /// Windows in which a configured view made no probe for over 3 intervals.
    silent_windows: u64,
    /// Views that ever did.
    silent_views: BTreeSet<ViewKey>,
    /// Reload checks where the status lacked a configured view.
    missing_from_status: u64,
    /// Reload checks where the status had a view not configured.
    extra_in_status: u64,
    /// Views ever missing from the status.
    missing_views: BTreeSet<ViewKey>,
}

#[derive(Debug, Default)]
struct Reloads {
    ok: u64,
    failed: u64,
    /// Seconds from SIGHUP to the status showing the new plan.
    took_s: Vec<f64>,
    errors: Vec<String>,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it and
    // must not start an hour-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: not run under `cargo test`; run it with `cargo bench --bench soak`");
        return;
    }
    let secs = std::env::var("PARALLAX_SOAK_SECS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(3600);
    let duration = Duration::from_secs(secs.clamp(60, 86_400));
    // Ctrl-C or SIGTERM: the guards will not run, so kill the child here.
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            procs::kill_all();
            std::process::exit(130);
        });
    });
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-soak");
    if let Err(e) = run(duration, &PathBuf::from(env!("CARGO_BIN_EXE_parallax")), &out_dir) {
        procs::kill_all();
        eprintln!("soak bench failed: {e}");
        std::process::exit(1);
    }
}

fn ip(v4: Ipv4Addr) -> IpAddr {
    IpAddr::V4(v4)
}

fn run(duration: Duration, binary: &Path, out_dir: &Path) -> io::Result<()> {
    let load_before = loadavg();
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let addr = |v4: Ipv4Addr| -> io::Result<SocketAddr> {
        Ok(loopback(SocketAddr::new(ip(v4), free_port(ip(v4))?)))
    };
    let layout = Layout {
        admin: addr(ADMIN_IP)?,
        collector: addr(COLLECTOR_IP)?,
        healthy: (11..15).map(|n| addr(Ipv4Addr::new(127, 0, 0, n))).collect::<io::Result<_>>()?,
        chaos: (21..25).map(|n| addr(Ipv4Addr::new(127, 0, 0, n))).collect::<io::Result<_>>()?,
    };
    // The fleet first, so the first probes find it.
    let start = Instant::now();
    // Time to start, the run, and a margin for the final reads.
    let until = start + duration + Duration::from_secs(180);
    let healthy_counters = Arc::new(ServerCounters::default());
    let chaos_counters = Arc::new(ServerCounters::default());
    let (healthy_tx, healthy_rx) = watch::channel(Phase::Healthy);
    let (chaos_tx, chaos_rx) = watch::channel(Phase::Healthy);
    let timeline = Arc::new(Timeline::default());
    let received = Arc::new(collector::Received::default());
    for a in &layout.healthy {
        runtime.spawn(fleet::server(*a, healthy_rx.clone(), healthy_counters.clone()));
    }
    for a in &layout.chaos {
        runtime.spawn(fleet::server(*a, chaos_rx.clone(), chaos_counters.clone()));
    }
    runtime.spawn(collector::run(layout.collector, until, received.clone(), daemon::is_healthy_target));
    for a in &layout.healthy {
        procs::wait_listening(*a, Duration::from_secs(10))?;
    }
    let mut config = Config::write(dir.path(), &layout)?;
    let mut configured = config.views();
    let mut configured_since: HashMap<ViewKey, f64> = configured.keys().map(|k| (k.clone(), 0.0)).collect();
    let mut daemon = Daemon::start(binary, dir.path(), layout.admin)?;
    let pid = daemon.pid();
    let t0 = Instant::now();
    let startup_s = start.elapsed().as_secs_f64();
    // Ready: every view compiled and running.
    let mut generation = 0;
    for _ in 0..600 {
        if let Ok(s) = daemon.summary() {
            if s.ready && s.views == configured.len() {
                generation = s.generation;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "soak: parallax pid {pid}, {} views, generation {generation}, running {} s (admin {}, collector {})",
        configured.len(),
        duration.as_secs(),
        layout.admin,
        layout.collector
    );
    // Chaos starts now; the collector flaps from the bench's start.
    runtime.spawn(fleet::chaos_controller(chaos_tx, t0, t0 + duration, timeline.clone()));
    let warm_up = WARM_UP.min(duration / 4);
    let wall_at_warm_up = std::time::SystemTime::now() + warm_up;
    received.warm_until_unix_ns.store(
        wall_at_warm_up.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
        Ordering::Relaxed,
    );

    let mut samples: Vec<Sample> = Vec::new();
    let mut lost = Lost::default();
    let mut reloads = Reloads::default();
    let mut sample_errors = 0u64;
    let end = t0 + duration;
    let mut next_sample = t0;
    let mut next_reload = t0 + RELOAD_EVERY;
    // Bounded: one round per sample or reload, with room for retries.
    let rounds =
        4 * (duration.as_secs() / SAMPLE_EVERY.as_secs() + duration.as_secs() / RELOAD_EVERY.as_secs()) + 16;
    for _ in 0..rounds {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wake = next_sample.min(next_reload).min(end);
        if wake > now {
            std::thread::sleep(wake - now);
            continue;
        }
        daemon.alive()?;
        if Instant::now() >= next_reload {
            next_reload += RELOAD_EVERY;
            config.next_round()?;
            let new = config.views();
            let t = t0.elapsed().as_secs_f64();
            for k in new.keys() {
                configured_since.entry(k.clone()).or_insert(t);
            }
            configured_since.retain(|k, _| new.contains_key(k));
            configured = new;
            reload(&daemon, &configured, &mut generation, &mut reloads, &mut lost);
            // A changed interval starts the view fresh.
            configured_since.insert(("cint".to_owned(), "client".to_owned()), t);
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            match sample(&daemon, pid, t0) {
                Ok(s) => {
                    if let Some(prev) = samples.last() {
                        check_silent(prev, &s, &configured, &configured_since, &mut lost);
                    }
                    samples.push(s);
                }
                Err(e) => {
                    sample_errors += 1;
                    eprintln!("soak: sample failed: {e}");
                }
            }
            if let Some(s) = samples.last() {
                if samples.len() % 6 == 1 {
                    eprintln!(
                        "soak: t={:>5.0}s rss={} KiB fds={} threads={} probes={} reloads ok={} failed={} /metrics {} KiB in {:.0} ms",
                        s.t,
                        s.rss_kib,
                        s.fds,
                        s.threads,
                        s.metrics.probes.values().map(|(a, b)| a + b).sum::<u64>(),
                        reloads.ok,
                        reloads.failed,
                        s.metrics_bytes / 1024,
                        s.metrics_ms
                    );
                }
            }
        }
    }
    // The final reading.
    daemon.alive()?;
    if let Ok(s) = sample(&daemon, pid, t0) {
        if let Some(prev) = samples.last() {
            check_silent(prev, &s, &configured, &configured_since, &mut lost);
        }
        samples.push(s);
    }
    let final_status = daemon.status().ok();
    drop(daemon);
    let load_after = loadavg();
    drop(healthy_tx);
    let report = Report {
        duration,
        startup_s,
        warm_up,
        samples: &samples,
        sample_errors,
        lost: &lost,
        reloads: &reloads,
        timeline: &timeline,
        received: &received,
        healthy_counters: &healthy_counters,
        chaos_counters: &chaos_counters,
        final_views: final_status.map(|s| s.views().len()),
        configured: configured.len(),
        load: (load_before, load_after),
    };
    let (table, value) = report.render();
    println!("{table}");
    std::fs::create_dir_all(out_dir)?;
    let json = serde_json::to_string_pretty(&value).map_err(io::Error::other)?;
    std::fs::write(out_dir.join("results.json"), json)?;
    std::fs::write(out_dir.join("results.md"), &table)?;
    eprintln!("wrote {}", out_dir.join("results.json").display());
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

fn sample(daemon: &Daemon, pid: u32, t0: Instant) -> io::Result<Sample> {
    let t = t0.elapsed().as_secs_f64();
    let (rss, _) = rss_and_hwm_kib(pid)?;
    let fds = fd_count(pid)?;
    let threads = thread_count(pid);
    let asked = Instant::now();
    let (metrics, metrics_bytes) = daemon.metrics()?;
    Ok(Sample {
        t,
        rss_kib: rss,
        fds,
        threads,
        metrics,
        metrics_bytes,
        metrics_ms: asked.elapsed().as_secs_f64() * 1e3,
    })
}

/// A view configured through the whole window `prev..now` (and one interval before it) whose
/// probe count did not move, in a window longer than 3 of its intervals, is silent.
fn check_silent(
    prev: &Sample,
    now: &Sample,
    configured: &BTreeMap<ViewKey, Duration>,
    since: &HashMap<ViewKey, f64>,
    lost: &mut Lost,
) {
    let window = now.t - prev.t;
    for (key, interval) in configured {
        let interval = interval.as_secs_f64();
        if window <= 3.0 * interval || since.get(key).is_none_or(|s| *s > prev.t - interval - 1.0) {
            continue;
        }
        let count = |m: &Metrics| m.probes.get(key).copied().unwrap_or((0, 0));
        if count(&prev.metrics) == count(&now.metrics) {
            lost.silent_windows += 1;
            if lost.silent_views.insert(key.clone()) {
                eprintln!("soak: {}/{} made no probe in {window:.0} s", key.0, key.1);
            }
        }
    }
}

/// SIGHUP, then waits for the status to show the new plan with exactly the configured views.
fn reload(
    daemon: &Daemon,
    configured: &BTreeMap<ViewKey, Duration>,
    generation: &mut u64,
    reloads: &mut Reloads,
    lost: &mut Lost,
) {
    let sent = Instant::now();
    if let Err(e) = daemon.hangup() {
        reloads.failed += 1;
        reloads.errors.push(format!("SIGHUP: {e}"));
        return;
    }
    let mut last_problem = String::from("no answer");
    // Bounded: RELOAD_WITHIN at 250 ms a round.
    while sent.elapsed() < RELOAD_WITHIN {
        std::thread::sleep(Duration::from_millis(250));
        let summary = match daemon.summary() {
            Ok(s) => s,
            Err(e) => {
                last_problem = format!("summary: {e}");
                continue;
            }
        };
        if summary.generation <= *generation {
            last_problem = format!("generation still {}", summary.generation);
            continue;
        }
        if !summary.last_reload.as_ref().is_some_and(|r| r.ok) {
            reloads.failed += 1;
            reloads.errors.push(format!("generation {}: last_reload not ok", summary.generation));
            *generation = summary.generation;
            return;
        }
        let status = match daemon.status() {
            Ok(s) => s,
            Err(e) => {
                last_problem = format!("status: {e}");
                continue;
            }
        };
        let running = status.views();
        if running != *configured {
            // The poller may have reloaded a moment before the SIGHUP's reload: wait for ours.
            last_problem = format!("status has {} views, {} configured", running.len(), configured.len());
            continue;
        }
        *generation = status.generation;
        reloads.ok += 1;
        reloads.took_s.push(sent.elapsed().as_secs_f64());
        return;
    }
    reloads.failed += 1;
    reloads.errors.push(format!("not applied within {RELOAD_WITHIN:?}: {last_problem}"));
    if let Ok(status) = daemon.status() {
        let running = status.views();
        let missing: Vec<_> = configured.keys().filter(|k| !running.contains_key(*k)).cloned().collect();
        if !missing.is_empty() {
            lost.missing_from_status += 1;
            lost.missing_views.extend(missing);
        }
        if running.keys().any(|k| !configured.contains_key(k)) {
            lost.extra_in_status += 1;
        }
    }
}

struct Report<'a> {
    duration: Duration,
    startup_s: f64,
    warm_up: Duration,
    samples: &'a [Sample],
    sample_errors: u64,
    lost: &'a Lost,
    reloads: &'a Reloads,
    timeline: &'a Timeline,
    received: &'a collector::Received,
    healthy_counters: &'a ServerCounters,
    chaos_counters: &'a ServerCounters,
    final_views: Option<usize>,
    configured: usize,
    load: ([f64; 3], [f64; 3]),
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn ms_bound(seconds: f64) -> String {
    if seconds.is_nan() {
        "-".to_owned()
    } else if seconds.is_infinite() {
        "> 5000 ms".to_owned()
    } else {
        format!("<= {} ms", seconds * 1e3)
    }
}

impl Report<'_> {
    fn render(&self) -> (String, serde_json::Value) {
        let samples = self.samples;
        let warm = self.warm_up.as_secs_f64();
        let steady: Vec<&Sample> = samples.iter().filter(|s| s.t >= warm).collect();
        let hours = 3600.0;
        let series =
            |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> { steady.iter().map(|s| (s.t, f(s))).collect() };
        let rss_slope = stats::slope(&series(&|s: &Sample| s.rss_kib as f64)) * hours;
        let fd_slope = stats::slope(&series(&|s: &Sample| s.fds as f64)) * hours;
        let first = samples.first();
        let last = samples.last();
        let get = |s: Option<&Sample>, f: fn(&Sample) -> u64| s.map(f).unwrap_or(0);
        let rss = (
            get(first, |s| s.rss_kib),
            get(last, |s| s.rss_kib),
            samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        );
        let rss_steady_first = steady.first().map(|s| s.rss_kib).unwrap_or(0);
        let fds =
            (get(first, |s| s.fds), get(last, |s| s.fds), samples.iter().map(|s| s.fds).max().unwrap_or(0));
        let fds_steady_min = steady.iter().map(|s| s.fds).min().unwrap_or(0);

        // Lateness, every view, from the daemon's histogram: after warm-up, all of it, and the
        // windows wholly inside a chaos black-hole phase.
        let base = steady.first().map(|s| s.metrics.lateness.clone()).unwrap_or_default();
        let overall = last.map(|s| stats::delta(&base, &s.metrics.lateness)).unwrap_or_default();
        let mut during_black_hole = Vec::new();
        let mut outside_black_hole = Vec::new();
        for pair in steady.windows(2) {
            let d = stats::delta(&pair[0].metrics.lateness, &pair[1].metrics.lateness);
            let phases = self
                .timeline
                .phases_during(Duration::from_secs_f64(pair[0].t), Duration::from_secs_f64(pair[1].t));
            if !phases.is_empty() && phases.iter().all(|p| p.is_black_hole()) {
                stats::add(&mut during_black_hole, &d);
            } else if phases.iter().all(|p| !p.is_black_hole()) {
                stats::add(&mut outside_black_hole, &d);
            }
        }
        let hist = |h: &[(f64, u64)]| {
            json!({
                "observations": h.last().map(|(_, n)| *n).unwrap_or(0),
                "p50_le_s": stats::histogram_quantile_bound(h, 0.5),
                "p99_le_s": stats::histogram_quantile_bound(h, 0.99),
                "p999_le_s": stats::histogram_quantile_bound(h, 0.999),
                "above_10ms": stats::fraction_above(h, 0.01),
                "above_100ms": stats::fraction_above(h, 0.1),
            })
        };

        // Healthy views' lateness, per probe, from the spans the collector received.
        let (mut healthy_ms, mut chaos_ms) = self.received.lateness();
        healthy_ms.sort_by(f32::total_cmp);
        chaos_ms.sort_by(f32::total_cmp);
        let spans = |v: &[f32]| {
            json!({
                "spans": v.len(),
                "p50_ms": round(stats::quantile(v, 0.5), 3),
                "p99_ms": round(stats::quantile(v, 0.99), 3),
                "p999_ms": round(stats::quantile(v, 0.999), 3),
                "max_ms": round(v.last().map(|x| f64::from(*x)).unwrap_or(f64::NAN), 3),
            })
        };

        // Healthy views' probes done against planned, from the first to the last sample.
        let mut per_view_ratio = Vec::new();
        let mut done_total = 0u64;
        let mut planned_total = 0f64;
        let mut healthy_failures = 0u64;
        if let (Some(a), Some(b)) = (first, last) {
            let planned = (b.t - a.t) / INTERVAL.as_secs_f64();
            for (key, (ok, failed)) in &b.metrics.probes {
                if !daemon::is_healthy_target(&key.0) {
                    continue;
                }
                let (ok0, failed0) = a.metrics.probes.get(key).copied().unwrap_or((0, 0));
                let done = (ok + failed).saturating_sub(ok0 + failed0);
                healthy_failures += failed.saturating_sub(failed0);
                done_total += done;
                planned_total += planned;
                per_view_ratio.push(done as f64 / planned);
            }
        }
        per_view_ratio.sort_by(f64::total_cmp);
        let healthy_views_seen = per_view_ratio.len();
        let min_ratio = per_view_ratio.first().copied().unwrap_or(f64::NAN);
        let total_ratio = if planned_total > 0.0 { done_total as f64 / planned_total } else { f64::NAN };
        let skipped = last.map(|s| s.metrics.skipped).unwrap_or(0);

        // Exports.
        let failures = last.map(|s| s.metrics.export_failures.clone()).unwrap_or_default();
        let dropped = last.map(|s| s.metrics.export_dropped.clone()).unwrap_or_default();
        let reload_counters = last.map(|s| s.metrics.reloads).unwrap_or((0, 0));
        let r = self.received;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        let chaos_phases: BTreeMap<&str, usize> =
            self.timeline.entries().iter().fold(BTreeMap::new(), |mut m, (_, p)| {
                *m.entry(p.as_str()).or_default() += 1;
                m
            });
        let mut took = self.reloads.took_s.clone();
        took.sort_by(f64::total_cmp);
        let took_max = took.last().copied().unwrap_or(f64::NAN);
        let took_p50 = took.get(took.len() / 2).copied().unwrap_or(f64::NAN);
        let metrics_ms_max = samples.iter().map(|s| s.metrics_ms).fold(0.0, f64::max);
        let metrics_kib = last.map(|s| s.metrics_bytes / 1024).unwrap_or(0);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let measured_s = last.map(|s| s.t).unwrap_or(0.0);

        let value = json!({
            "duration_s": self.duration.as_secs(),
            "measured_s": round(measured_s, 1),
            "warm_up_s": warm,
            "startup_s": round(self.startup_s, 2),
            "machine": {
                "cores": cores,
                "loadavg_before": self.load.0,
                "loadavg_after": self.load.1,
                "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
                "parallax": env!("CARGO_PKG_VERSION"),
                "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            },
            "views": {
                "base": daemon::BASE_VIEWS,
                "configured_at_end": self.configured,
                "in_status_at_end": self.final_views,
                "healthy_base": 2 * daemon::HEALTHY_TARGETS,
                "chaos_base": 2 * daemon::CHAOS_TARGETS,
                "interval_s": INTERVAL.as_secs_f64(),
            },
            "samples": samples.len(),
            "sample_errors": self.sample_errors,
            "rss_kib": {
                "first": rss.0, "after_warm_up": rss_steady_first, "last": rss.1, "max": rss.2,
                "slope_kib_per_hour": round(rss_slope, 1),
            },
            "fds": {
                "first": fds.0, "last": fds.1, "max": fds.2, "min_after_warm_up": fds_steady_min,
                "slope_per_hour": round(fd_slope, 2),
            },
            "threads_last": last.map(|s| s.threads).unwrap_or(0),
            // Every sample, so slopes can be fitted from any point: [t s, RSS KiB, fds].
            "series_t_rss_fds": samples.iter().map(|s| [round(s.t, 1), s.rss_kib as f64, s.fds as f64]).collect::<Vec<_>>(),
            "lateness_all_views_histogram": {
                "after_warm_up": hist(&overall),
                "windows_in_black_hole": hist(&during_black_hole),
                "windows_outside_black_hole": hist(&outside_black_hole),
            },
            "lateness_from_spans": {
                "healthy_views": spans(&healthy_ms),
                "chaos_views": spans(&chaos_ms),
            },
            "healthy_probes": {
                "views": healthy_views_seen,
                "done": done_total,
                "planned": round(planned_total, 0),
                "done_over_planned_total": round(total_ratio, 4),
                "done_over_planned_min_view": round(min_ratio, 4),
                "failures": healthy_failures,
            },
            "skipped_ticks_all_views": skipped,
            "lost": {
                "silent_windows": self.lost.silent_windows,
                "silent_views": self.lost.silent_views.iter().map(|(t, v)| format!("{t}/{v}")).collect::<Vec<_>>(),
                "reload_checks_missing_views": self.lost.missing_from_status,
                "reload_checks_extra_views": self.lost.extra_in_status,
                "missing_views": self.lost.missing_views.iter().map(|(t, v)| format!("{t}/{v}")).collect::<Vec<_>>(),
            },
            "reloads": {
                "ok": self.reloads.ok,
                "failed": self.reloads.failed,
                "errors": self.reloads.errors,
                "took_s_p50": round(took_p50, 2),
                "took_s_max": round(took_max, 2),
                "parallax_reload_total": { "success": reload_counters.0, "failure": reload_counters.1 },
            },
            "collector": {
                "up_periods": load(&r.ups),
                "down_periods": load(&r.downs),
                "unavailable_periods": load(&r.unavailable_periods),
                "trace_requests": load(&r.trace_requests),
                "metric_requests": load(&r.metric_requests),
                "bytes": load(&r.bytes),
                "spans": load(&r.spans),
                "answered_503": load(&r.refused),
                "undecodable": load(&r.bad),
                "parallax_export_failures_total": failures,
                "parallax_export_dropped_total": dropped,
            },
            "chaos": {
                "phases_entered": chaos_phases,
                "chaos_servers": { "accepted": load(&self.chaos_counters.accepted), "answered": load(&self.chaos_counters.answered), "hung": load(&self.chaos_counters.hung), "garbage": load(&self.chaos_counters.garbage), "binds": load(&self.chaos_counters.binds) },
                "healthy_servers": { "accepted": load(&self.healthy_counters.accepted), "answered": load(&self.healthy_counters.answered) },
            },
            "metrics_scrape": { "kib": metrics_kib, "max_ms": round(metrics_ms_max, 1) },
        });

        let mut t = String::new();
        let _ = writeln!(
            t,
            "parallax soak benchmark — {cores} cores, load average {:.2} before / {:.2} after (1 min), {:.0} s measured ({:.0} s warm-up left out of slopes and lateness)\n",
            self.load.0[0], self.load.1[0], measured_s, warm
        );
        let _ = writeln!(t, "| figure | value |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "| {k} | {v} |");
        };
        row(
            "views (base / configured at end / in status at end)",
            format!(
                "{} / {} / {}",
                daemon::BASE_VIEWS,
                self.configured,
                self.final_views.map(|v| v.to_string()).unwrap_or("-".into())
            ),
        );
        row(
            "RSS first / after warm-up / last / max",
            format!("{} / {} / {} / {} KiB", rss.0, rss_steady_first, rss.1, rss.2),
        );
        row("RSS slope after warm-up", format!("{rss_slope:+.0} KiB/hour"));
        row("open fds first / last / max", format!("{} / {} / {}", fds.0, fds.1, fds.2));
        row("fd slope after warm-up", format!("{fd_slope:+.2} /hour"));
        row(
            "healthy views' lateness p50 / p99 / p99.9 / max (spans)",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms ({} spans)",
                stats::quantile(&healthy_ms, 0.5),
                stats::quantile(&healthy_ms, 0.99),
                stats::quantile(&healthy_ms, 0.999),
                healthy_ms.last().copied().unwrap_or(f32::NAN),
                healthy_ms.len()
            ),
        );
        row(
            "all views' lateness p50 / p99 (histogram, after warm-up)",
            format!(
                "{} / {}",
                ms_bound(stats::histogram_quantile_bound(&overall, 0.5)),
                ms_bound(stats::histogram_quantile_bound(&overall, 0.99))
            ),
        );
        row(
            "all views' lateness p99 in / outside black-hole windows",
            format!(
                "{} / {}",
                ms_bound(stats::histogram_quantile_bound(&during_black_hole, 0.99)),
                ms_bound(stats::histogram_quantile_bound(&outside_black_hole, 0.99))
            ),
        );
        row(
            "healthy probes done / planned (total, worst view)",
            format!(
                "{done_total} / {planned_total:.0} ({:.4}, {:.4}), {healthy_failures} failed",
                total_ratio, min_ratio
            ),
        );
        row("skipped ticks (all views)", skipped.to_string());
        row(
            "lost views (silent > 3 intervals / missing after reload)",
            format!(
                "{} ({} windows) / {}",
                self.lost.silent_views.len(),
                self.lost.silent_windows,
                self.lost.missing_views.len()
            ),
        );
        row(
            "reloads ok / failed (SIGHUP → status shows the plan, p50 / max)",
            format!("{} / {} ({took_p50:.2} / {took_max:.2} s)", self.reloads.ok, self.reloads.failed),
        );
        row(
            "collector periods up / down / 503",
            format!("{} / {} / {}", load(&r.ups), load(&r.downs), load(&r.unavailable_periods)),
        );
        row(
            "collector received (trace / metric requests, spans, MiB)",
            format!(
                "{} / {}, {}, {:.1}",
                load(&r.trace_requests),
                load(&r.metric_requests),
                load(&r.spans),
                load(&r.bytes) as f64 / (1 << 20) as f64
            ),
        );
        row("export failures counted by parallax", format!("{failures:?}"));
        row("export drops counted by parallax", format!("{dropped:?}"));
        row("chaos phases entered", format!("{chaos_phases:?}"));
        row(
            "samples (errors), /metrics size, slowest scrape",
            format!("{} ({}), {metrics_kib} KiB, {metrics_ms_max:.0} ms", samples.len(), self.sample_errors),
        );
        (t, value)
    }
}
