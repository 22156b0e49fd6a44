//! The macro benchmark (issue 7): in one run on this machine, against one local
//! nginx, measures
//!
//! 1. CPU per probe, new connection per probe, plain HTTP and HTTPS: `parallax run` (a child
//!    process at a fixed rate; CPU from /proc, probes from its own /metrics) vs
//!    `prometheus-blackbox-exporter` driven at the same rate through `/probe` vs the raw-socket
//!    floor in this process (blocking std sockets, and a current-thread tokio runtime);
//! 2. scheduler lateness p50/p99/max with 1,000 and 10,000 views at 100 and 1,000 probes/s
//!    (the daemon in process, every probe's lateness as the scheduler measures it);
//! 3. resident memory of `parallax run` with 1,000, 10,000 and 100,000 views, idle and probing;
//! 4. accuracy: the error of the reported `ttfb` against a server that answers after 20 ms,
//!    while the daemon runs 1,000 probes/s;
//!
//! prints a table with ratios and writes the figures as JSON (`benches/results.json` after a
//! full run; `target/bench-macro/` always).
//!
//! ```text
//! cargo bench --bench macro                      # everything, ~12 minutes
//! cargo bench --bench macro -- cpu accuracy      # some sections
//! MACRO_ROUNDS=5 MACRO_WINDOW_S=20 cargo bench --bench macro -- cpu
//! ```
//!
//! Network safety: every address dialed or bound is a 127.0.0.x address (checked in
//! `procs::loopback`); every loop is bounded in count and time; child processes are killed
//! when their guard drops, on panic, and on Ctrl-C.

mod blackbox;
mod daemon_child;
mod floor;
mod in_process;
mod nginx;
// Shared with benches/soak, which uses other parts of it.
#[allow(dead_code)]
mod procs;

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::daemon_child::Fleet;
use crate::procs::{loadavg, loopback};

const NGINX_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const BLACKBOX_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const ADMIN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const DELAY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const CAPTURE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);

/// The fixed probe rate of the CPU comparison.
const CPU_RATE: f64 = 200.0;
/// The delay of the accuracy server.
const SERVER_DELAY: Duration = Duration::from_millis(20);

struct Settings {
    sections: Vec<&'static str>,
    rounds: usize,
    window: Duration,
    binary: PathBuf,
    out_dir: PathBuf,
}

const ALL: [&str; 4] = ["cpu", "lateness", "memory", "accuracy"];

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without it,
    // and must not start a 12-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("macro: not run under `cargo test`; run it with `cargo bench --bench macro`");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let sections: Vec<&'static str> = if args.is_empty() {
        ALL.to_vec()
    } else {
        ALL.into_iter().filter(|s| args.iter().any(|a| a == s)).collect()
    };
    if sections.is_empty() {
        eprintln!("usage: cargo bench --bench macro [-- {}]", ALL.join(" "));
        std::process::exit(2);
    }
    let env_num = |name: &str, default: u64| -> u64 {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let settings = Settings {
        sections,
        rounds: env_num("MACRO_ROUNDS", 3).clamp(1, 20) as usize,
        window: Duration::from_secs(env_num("MACRO_WINDOW_S", 10).clamp(2, 120)),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_parallax")),
        out_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-macro"),
    };
    // Ctrl-C or SIGTERM: the guards will not run, so kill the children here.
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
    if let Err(e) = run(&settings) {
        procs::kill_all();
        eprintln!("macro bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(settings: &Settings) -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let load_before = loadavg();
    let started = Instant::now();
    let nginx_ip = IpAddr::V4(NGINX_IP);
    let pki = nginx::Pki::new(dir.path(), nginx_ip).map_err(io::Error::other)?;
    let nginx = nginx::Nginx::start(dir.path(), nginx_ip, &pki)?;
    eprintln!("nginx on {} (http) and {} (https)", nginx.http, nginx.https);

    let mut results = serde_json::Map::new();
    let mut table = String::new();
    for section in &settings.sections {
        eprintln!("== {section} (load {:?})", loadavg());
        let (value, text) = match *section {
            "cpu" => cpu(settings, dir.path(), &nginx, &pki)?,
            "lateness" => lateness(dir.path(), &nginx)?,
            "memory" => memory(settings, dir.path(), &nginx)?,
            "accuracy" => accuracy(dir.path())?,
            _ => continue,
        };
        results.insert((*section).to_owned(), value);
        table.push_str(&text);
        table.push('\n');
    }
    let load_after = loadavg();
    let machine = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nginx": command_version("/usr/sbin/nginx", "-v"),
        "blackbox_exporter": command_version("/usr/bin/prometheus-blackbox-exporter", "--version"),
        "parallax": env!("CARGO_PKG_VERSION"),
        "duration_s": started.elapsed().as_secs_f64().round(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    results.insert("machine".to_owned(), machine);
    let header = format!(
        "parallax macro benchmark — {} cores, load average {:.2} before / {:.2} after (1 min), {:.0} s\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_before[0],
        load_after[0],
        started.elapsed().as_secs_f64()
    );
    println!("{header}{table}");
    let json = serde_json::to_string_pretty(&Value::Object(results)).map_err(io::Error::other)?;
    std::fs::create_dir_all(&settings.out_dir)?;
    let name = settings.sections.join("-");
    std::fs::write(settings.out_dir.join(format!("results-{name}.json")), &json)?;
    std::fs::write(settings.out_dir.join(format!("results-{name}.md")), format!("{header}{table}"))?;
    if settings.sections.len() == ALL.len() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results.json");
        std::fs::write(&path, json)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn command_version(binary: &str, flag: &str) -> String {
    std::process::Command::new(binary)
        .arg(flag)
        .output()
        .map(|o| {
            let text =
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            text.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 1. CPU per probe

/// One measured window of one subject.
#[derive(Debug, Clone, Copy)]
struct CpuWindow {
    probes: u64,
    failed: u64,
    /// CPU, ns: precise (schedstat) where available.
    cpu_ns: u64,
    /// CPU from /proc/PID/stat ticks, ns (10 ms resolution), for the child processes.
    cpu_ticks_ns: Option<u64>,
    wall: Duration,
}

impl CpuWindow {
    fn us_per_probe(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.probes.max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "probes": self.probes,
            "failed": self.failed,
            "cpu_ms": self.cpu_ns as f64 / 1e6,
            "cpu_ticks_ms": self.cpu_ticks_ns.map(|n| n as f64 / 1e6),
            "wall_s": self.wall.as_secs_f64(),
            "rate_per_s": self.probes as f64 / self.wall.as_secs_f64(),
            "us_per_probe": self.us_per_probe(),
        })
    }
}

const SUBJECTS: [&str; 4] = ["floor_std", "floor_tokio", "parallax", "blackbox_exporter"];

fn cpu(
    settings: &Settings,
    dir: &Path,
    nginx: &nginx::Nginx,
    pki: &nginx::Pki,
) -> io::Result<(Value, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let blackbox = blackbox::Blackbox::start(dir, IpAddr::V4(BLACKBOX_IP), &pki.ca_file)?;
    let tls = floor::tls_config(&pki.ca_der).map_err(io::Error::other)?;
    let mut json_out = serde_json::Map::new();
    let mut text = format!(
        "## 1. CPU per probe ({CPU_RATE:.0} probes/s, new connection each, {} rounds of {} s; median [min-max])\n\n",
        settings.rounds,
        settings.window.as_secs()
    );
    text.push_str("| scheme | subject | µs CPU/probe | × floor (std) | × floor (tokio) | blackbox ÷ this | probes ok/failed |\n");
    text.push_str("|---|---|---|---|---|---|---|\n");
    let mut goals = Vec::new();
    for scheme in ["http", "https"] {
        let target = if scheme == "http" { nginx.http } else { nginx.https };
        let url = format!("{scheme}://{target}/");
        let request = Arc::new(runtime.block_on(capture_request(dir, target))?);
        eprintln!("{scheme}: the request parallax writes, {} bytes, replayed by the floor", request.len());
        let mut windows: Vec<(usize, CpuWindow)> = Vec::new();
        for round in 0..settings.rounds {
            eprintln!("{scheme} round {}/{} (load {:?})", round + 1, settings.rounds, loadavg());
            // floor, std
            let (req, tls2, window) = (request.clone(), tls.clone(), settings.window);
            let std_run = std::thread::spawn(move || {
                floor::run_std(CPU_RATE, window, || match scheme {
                    "http" => floor::std_http(target, &req),
                    _ => floor::std_https(target, &req, &tls2),
                })
            })
            .join()
            .map_err(|_| io::Error::other("floor thread panicked"))?;
            windows.push((0, floor_window(std_run)));
            // floor, tokio
            let tokio_run = floor::run_tokio(
                CPU_RATE,
                settings.window,
                target,
                request.clone(),
                (scheme == "https").then(|| tls.clone()),
            )?;
            windows.push((1, floor_window(tokio_run)));
            // parallax
            windows.push((2, parallax_window(settings, dir, &url, scheme, pki)?));
            // blackbox_exporter
            let module = if scheme == "http" { "http_plain" } else { "https" };
            let pid = blackbox.pid();
            let cpu0 = procs::process_cpu(pid)?;
            let t0 = Instant::now();
            let driven = runtime.block_on(blackbox.drive(&url, module, CPU_RATE, settings.window));
            let cpu1 = procs::process_cpu(pid)?;
            windows.push((
                3,
                CpuWindow {
                    probes: driven.ok,
                    failed: driven.failed,
                    cpu_ns: cpu1.precise_ns.saturating_sub(cpu0.precise_ns),
                    cpu_ticks_ns: Some(ticks_ns(cpu0, cpu1)),
                    wall: t0.elapsed(),
                },
            ));
        }
        let median = |subject: usize| -> (f64, f64, f64) {
            let mut v: Vec<f64> =
                windows.iter().filter(|(s, _)| *s == subject).map(|(_, w)| w.us_per_probe()).collect();
            v.sort_by(f64::total_cmp);
            (
                percentile_f(&v, 0.5),
                v.first().copied().unwrap_or(f64::NAN),
                v.last().copied().unwrap_or(f64::NAN),
            )
        };
        let floor_std = median(0).0;
        let floor_tokio = median(1).0;
        let bb = median(3).0;
        let mut scheme_json = serde_json::Map::new();
        for (i, subject) in SUBJECTS.iter().enumerate() {
            let (med, min, max) = median(i);
            let (ok, failed) = windows
                .iter()
                .filter(|(s, _)| *s == i)
                .fold((0, 0), |(o, f), (_, w)| (o + w.probes, f + w.failed));
            let _ = writeln!(
                text,
                "| {scheme} | {subject} | {med:.1} [{min:.1}-{max:.1}] | {:.2} | {:.2} | {:.1} | {ok}/{failed} |",
                med / floor_std,
                med / floor_tokio,
                bb / med,
            );
            scheme_json.insert(
                (*subject).to_owned(),
                json!({
                    "us_per_probe_median": med,
                    "us_per_probe_min": min,
                    "us_per_probe_max": max,
                    "ratio_to_floor_std": med / floor_std,
                    "ratio_to_floor_tokio": med / floor_tokio,
                    "blackbox_over_this": bb / med,
                    "windows": windows.iter().filter(|(s, _)| *s == i).map(|(_, w)| w.json()).collect::<Vec<_>>(),
                }),
            );
        }
        // Ratios within each round (its four windows are run back to back), then their median:
        // less exposed to the load of other processes than ratios of medians.
        let per_round = |a: usize, b: usize| -> f64 {
            let us = |subject: usize, round: usize| {
                windows.iter().filter(|(s, _)| *s == subject).nth(round).map(|(_, w)| w.us_per_probe())
            };
            let mut r: Vec<f64> =
                (0..settings.rounds).filter_map(|round| Some(us(a, round)? / us(b, round)?)).collect();
            r.sort_by(f64::total_cmp);
            percentile_f(&r, 0.5)
        };
        let (px_std, px_tokio, bb_px) = (per_round(2, 0), per_round(2, 1), per_round(3, 2));
        if scheme == "http" {
            goals.push(format!(
                "- plain HTTP: parallax = {px_std:.2} × the std floor, {px_tokio:.2} × the tokio floor (goal ≤ 1.3 ×); blackbox_exporter spends {bb_px:.1} × parallax (goal ≥ 7 ×) — medians of the per-round ratios",
            ));
        } else {
            goals.push(format!(
                "- HTTPS: blackbox_exporter spends {bb_px:.1} × parallax (goal ≥ 5 ×); parallax = {px_std:.2} × the std floor, {px_tokio:.2} × the tokio floor — medians of the per-round ratios",
            ));
        }
        scheme_json.insert(
            "per_round_ratio_medians".to_owned(),
            json!({ "parallax_over_floor_std": px_std, "parallax_over_floor_tokio": px_tokio, "blackbox_over_parallax": bb_px }),
        );
        scheme_json.insert("request_bytes".to_owned(), json!(request.len()));
        json_out.insert(scheme.to_owned(), Value::Object(scheme_json));
    }
    text.push('\n');
    for g in goals {
        text.push_str(&g);
        text.push('\n');
    }
    json_out.insert("rate_per_s".to_owned(), json!(CPU_RATE));
    json_out.insert("rounds".to_owned(), json!(settings.rounds));
    json_out.insert("window_s".to_owned(), json!(settings.window.as_secs()));
    Ok((Value::Object(json_out), text))
}

fn ticks_ns(a: procs::Cpu, b: procs::Cpu) -> u64 {
    b.ticks.saturating_sub(a.ticks) * 10_000_000
}

fn floor_window(run: floor::FloorRun) -> CpuWindow {
    CpuWindow { probes: run.ok, failed: run.failed, cpu_ns: run.cpu_ns, cpu_ticks_ns: None, wall: run.wall }
}

/// One window of `parallax run` at [`CPU_RATE`]: a fresh daemon, 3 s of warm-up, then CPU and
/// probe counters over the window (counters scraped outside the CPU window: encoding /metrics
/// costs the daemon CPU that probing does not).
fn parallax_window(
    settings: &Settings,
    dir: &Path,
    url: &str,
    scheme: &str,
    pki: &nginx::Pki,
) -> io::Result<CpuWindow> {
    let fleet = Fleet {
        targets: CPU_RATE as usize,
        url: url.to_owned(),
        checker: false,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(800),
        ca_file: (scheme == "https").then(|| pki.ca_file.clone()),
    };
    let daemon = daemon_child::Daemon::start(
        &settings.binary,
        &dir.join(format!("cpu-{scheme}")),
        &fleet,
        IpAddr::V4(ADMIN_IP),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let (ok0, failed0) = daemon.probes()?;
    let cpu0 = procs::process_cpu(daemon.pid())?;
    let t0 = Instant::now();
    std::thread::sleep(settings.window);
    let cpu1 = procs::process_cpu(daemon.pid())?;
    let wall = t0.elapsed();
    let (ok1, failed1) = daemon.probes()?;
    Ok(CpuWindow {
        probes: ok1 - ok0,
        failed: failed1 - failed0,
        cpu_ns: cpu1.precise_ns.saturating_sub(cpu0.precise_ns),
        cpu_ticks_ns: Some(ticks_ns(cpu0, cpu1)),
        wall,
    })
}

/// The exact bytes parallax writes for a client view of `http://{authority}/`: one probe of
/// such a view (with `connect_to` a capturing listener) through the library.
async fn capture_request(dir: &Path, authority: SocketAddr) -> io::Result<Vec<u8>> {
    let listener =
        tokio::net::TcpListener::bind(loopback(SocketAddr::new(IpAddr::V4(CAPTURE_IP), 0))).await?;
    let capture_addr = listener.local_addr()?;
    let config_dir = dir.join(format!("capture-{}", authority.port()));
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(
        config_dir.join("probes.toml"),
        format!(
            "[admin]\nlisten = \"127.0.0.1:9\"\n[[target]]\nname = \"capture\"\n[target.client]\nurl = \"http://{authority}/\"\nconnect_to = \"{capture_addr}\"\n"
        ),
    )?;
    let plan = parallax::config::load(&config_dir).map_err(|e| io::Error::other(e.to_string()))?;
    let view = plan.targets[0].client.clone();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await?;
        io::Result::Ok(buf)
    });
    let outcomes = parallax::probe::Prober::new().probe(&view).await;
    let request = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .map_err(|_| io::Error::other("capture timed out"))?
        .map_err(io::Error::other)??;
    if !outcomes.iter().all(|o| o.ok) {
        return Err(io::Error::other(format!("capture probe failed: {outcomes:?}")));
    }
    Ok(request)
}

// ---------------------------------------------------------------------------------------------
// 2. Scheduler lateness

fn lateness(dir: &Path, nginx: &nginx::Nginx) -> io::Result<(Value, String)> {
    let mut rows = Vec::new();
    let mut text = String::from(
        "## 2. Scheduler lateness (daemon in process, every probe, against nginx HTTP; 5 s warm-up, 15 s window)\n\n\
         | views | interval | probes/s | p50 ms | p99 ms | p99.9 ms | max ms | probes | skipped | failed |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let runs = [(1_000usize, 10u64), (1_000, 1), (10_000, 100), (10_000, 10)];
    for (views, interval_s) in runs {
        let fleet = Fleet {
            targets: views,
            url: format!("http://{}/", nginx.http),
            checker: false,
            interval: Duration::from_secs(interval_s),
            timeout: Duration::from_millis(800),
            ca_file: None,
        };
        eprintln!("lateness: {views} views every {interval_s} s (load {:?})", loadavg());
        let samples = in_process::run_daemon(
            &dir.join(format!("lateness-{views}-{interval_s}")),
            &fleet,
            Duration::from_secs(5),
            Duration::from_secs(15),
            None,
        )?;
        let mut l: Vec<f64> = samples.lateness_ns.iter().map(|n| *n as f64 / 1e6).collect();
        l.sort_by(f64::total_cmp);
        let (p50, p99, p999, max) = (
            percentile_f(&l, 0.5),
            percentile_f(&l, 0.99),
            percentile_f(&l, 0.999),
            l.last().copied().unwrap_or(f64::NAN),
        );
        let _ = writeln!(
            text,
            "| {views} | {interval_s} s | {:.0} | {p50:.3} | {p99:.3} | {p999:.3} | {max:.3} | {} | {} | {} |",
            fleet.rate(),
            l.len(),
            samples.skipped,
            samples.failed
        );
        rows.push(json!({
            "views": views, "interval_s": interval_s, "rate_per_s": fleet.rate(),
            "p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "max_ms": max,
            "probes": l.len(), "skipped": samples.skipped, "failed": samples.failed,
        }));
    }
    let at_goal = rows.iter().find(|r| r["views"] == 10_000 && r["interval_s"] == 10);
    if let Some(r) = at_goal {
        let _ = writeln!(
            text,
            "\n- 10,000 views at 1,000 probes/s: p99 {:.3} ms (goal < 2 ms)",
            r["p99_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok((json!({ "runs": rows }), text))
}

// ---------------------------------------------------------------------------------------------
// 3. Memory

fn memory(settings: &Settings, dir: &Path, nginx: &nginx::Nginx) -> io::Result<(Value, String)> {
    let mut rows = Vec::new();
    let mut text = String::from(
        "## 3. Resident memory of `parallax run` (one client + one checker view per target)\n\n\
         | views | state | probes/s | VmRSS MiB | VmHWM MiB | start-up s |\n|---|---|---|---|---|---|\n",
    );
    let mut idle = Vec::new();
    for views in [1_000usize, 10_000, 100_000] {
        for probing in [false, true] {
            let interval =
                if probing { Duration::from_millis(views as u64) } else { Duration::from_secs(86_400) };
            let fleet = Fleet {
                targets: views / 2,
                url: format!("http://{}/", nginx.http),
                checker: true,
                interval,
                timeout: Duration::from_millis(800),
                ca_file: None,
            };
            eprintln!(
                "memory: {views} views, {} (load {:?})",
                if probing { "probing" } else { "idle" },
                loadavg()
            );
            let daemon = daemon_child::Daemon::start(
                &settings.binary,
                &dir.join(format!("memory-{views}-{probing}")),
                &fleet,
                IpAddr::V4(ADMIN_IP),
            )?;
            // Idle: settled after start-up. Probing: every view has probed at least once.
            let wait = if probing { interval + Duration::from_secs(3) } else { Duration::from_secs(5) };
            std::thread::sleep(wait);
            let (rss, hwm) = procs::rss_and_hwm_kib(daemon.pid())?;
            let (ok, failed) = if probing { daemon.probes()? } else { (0, 0) };
            let state = if probing { "probing" } else { "idle" };
            let rate = if probing { fleet.rate() } else { 0.0 };
            let _ = writeln!(
                text,
                "| {views} | {state} | {rate:.0} | {:.1} | {:.1} | {:.2} |",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
                daemon.startup.as_secs_f64()
            );
            if !probing {
                idle.push((views, rss));
            }
            rows.push(json!({
                "views": views, "state": state, "rate_per_s": rate, "rss_kib": rss, "hwm_kib": hwm,
                "startup_s": daemon.startup.as_secs_f64(), "probes_ok": ok, "probes_failed": failed,
            }));
        }
    }
    let per_view = match (idle.first(), idle.last()) {
        (Some((v0, r0)), Some((v1, r1))) if v1 > v0 => (*r1 as f64 - *r0 as f64) / (*v1 - *v0) as f64,
        _ => f64::NAN,
    };
    let rss_100k = idle.last().map(|(_, r)| *r as f64 / 1024.0).unwrap_or(f64::NAN);
    let _ = writeln!(
        text,
        "\n- idle: {:.2} KiB per configured view (slope 1,000 → 100,000; goal ≤ 2 KiB), 100,000 views in {rss_100k:.1} MiB (goal < 256 MiB)",
        per_view
    );
    Ok((json!({ "runs": rows, "idle_kib_per_view": per_view, "idle_rss_mib_100k": rss_100k }), text))
}

// ---------------------------------------------------------------------------------------------
// 4. Accuracy

fn accuracy(dir: &Path) -> io::Result<(Value, String)> {
    let server = in_process::DelayServer::start(SocketAddr::new(IpAddr::V4(DELAY_IP), 0), SERVER_DELAY, 96)?;
    let fleet = Fleet {
        targets: 1_000,
        url: format!("http://{}/", server.addr),
        checker: false,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        ca_file: None,
    };
    eprintln!("accuracy: 1,000 views every 1 s against a {SERVER_DELAY:?} server (load {:?})", loadavg());
    let samples = in_process::run_daemon(
        &dir.join("accuracy"),
        &fleet,
        Duration::from_secs(5),
        Duration::from_secs(15),
        Some(server.log()),
    )?;
    drop(server);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut vs_server: Vec<f64> =
        samples.ttfb.iter().filter_map(|(t, s)| s.map(|s| ms(*t) - ms(s))).collect();
    let mut vs_nominal: Vec<f64> = samples.ttfb.iter().map(|(t, _)| ms(*t) - ms(SERVER_DELAY)).collect();
    let mut served: Vec<f64> =
        samples.ttfb.iter().filter_map(|(_, s)| s.map(|s| ms(s) - ms(SERVER_DELAY))).collect();
    let stats = |v: &mut Vec<f64>| -> Value {
        v.sort_by(f64::total_cmp);
        let mut abs: Vec<f64> = v.iter().map(|x| x.abs()).collect();
        abs.sort_by(f64::total_cmp);
        json!({
            "n": v.len(),
            "signed_p1_ms": percentile_f(v, 0.01), "signed_p50_ms": percentile_f(v, 0.5), "signed_p99_ms": percentile_f(v, 0.99),
            "abs_p50_ms": percentile_f(&abs, 0.5), "abs_p99_ms": percentile_f(&abs, 0.99), "abs_max_ms": abs.last().copied().unwrap_or(f64::NAN),
        })
    };
    let a = stats(&mut vs_server);
    let b = stats(&mut vs_nominal);
    let c = stats(&mut served);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut text = String::from(
        "## 4. ttfb accuracy (daemon in process, 1,000 views every 1 s, server answers 20 ms after reading the request)\n\n\
         | error of reported ttfb | n | |error| p50 ms | |error| p99 ms | |error| max ms | signed p50 ms |\n|---|---|---|---|---|---|\n",
    );
    for (name, v) in [
        ("vs the delay the server really waited", &a),
        ("vs the nominal 20 ms", &b),
        ("(server's own oversleep past 20 ms)", &c),
    ] {
        let _ = writeln!(
            text,
            "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            v["n"],
            f(v, "abs_p50_ms"),
            f(v, "abs_p99_ms"),
            f(v, "abs_max_ms"),
            f(v, "signed_p50_ms")
        );
    }
    let _ = writeln!(
        text,
        "\n- ttfb error p99 {:.3} ms against the server's own clock (goal < 1 ms); {} probes failed, {} ticks skipped",
        f(&a, "abs_p99_ms"),
        samples.failed,
        samples.skipped
    );
    Ok((
        json!({ "vs_server": a, "vs_nominal": b, "server_oversleep": c, "failed": samples.failed, "skipped": samples.skipped }),
        text,
    ))
}

/// The `q` quantile of sorted `v` (nearest rank).
fn percentile_f(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
