//! `parallax demo`'s live table in a real terminal: tmux runs the binary in a pane of 80×24 and
//! of 200×50, and the test reads the screen as a person would see it (`capture-pane`) while it
//! redraws: no line wider than the terminal, no row twice, the dashboard's URL on screen; on
//! the wide one, every column and every reason. Then Ctrl-C (tmux sends the key): exit 0, and
//! the final snapshot on the terminal's own screen is complete — every view, every reason —
//! and fits the width too.
//!
//! Needs tmux (Debian's `tmux`, which scripts/test installs); without it the test fails saying
//! so. Only loopback is addressed (the demo's backends and dashboard); every wait is bounded.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tokio::time::Instant;

/// Every mismatch the demo opens: (target, checker, diagnosis).
const EXPECTED: [(&str, &str, &str); 7] = [
    ("shallow-health", "alb", "shallow_health_path"),
    ("tls-port", "alb", "checker_protocol_mismatch"),
    ("etp-local", "kube-proxy", "no_local_endpoints"),
    ("allowlist", "gcp", "checker_source_blocked"),
    ("no-sni", "appgw", "sni_mismatch"),
    ("host-route", "alb", "host_route_mismatch"),
    ("status-204", "gcp", "status_matcher_mismatch"),
];

/// How long the demo may take to open every mismatch (about 8 s on an idle machine).
const MISMATCHES_WITHIN: Duration = Duration::from_secs(60);

fn tmux_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("tmux")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("tmux is not installed: apt-get install -y tmux (scripts/test installs it when run as root)")
    })
}

/// A tmux server of this test's own (its socket in a private directory), with one session
/// running `parallax demo` in a pane of the given size. Dropping it ends the server.
struct Pane {
    tmux: PathBuf,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    width: usize,
    height: usize,
}

impl Pane {
    fn start(width: usize, height: usize) -> Pane {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pane =
            Pane { tmux: tmux_binary(), socket: dir.path().join("tmux.sock"), _dir: dir, width, height };
        let out = pane.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "demo",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            // bash waits through the Ctrl-C its child handles, and says how the child ended
            // (tmux's own record of a pane's exit status is not always there in time).
            "bash",
            "-c",
            "\"$0\" demo --listen 127.0.0.1:0; echo \"parallax exited with status $?\"",
            env!("CARGO_BIN_EXE_parallax"),
            // In the same command, so it holds before the demo can exit: the pane and its last
            // screen stay after the process ends.
            ";",
            "set-option",
            "-t",
            "demo",
            "remain-on-exit",
            "on",
        ]);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        pane
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new(&self.tmux)
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("PARALLAX_LOG")
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux runs")
    }

    /// The visible screen, or with `history` everything the pane printed that is still held.
    fn capture(&self, history: bool) -> String {
        let args: &[&str] = if history {
            &["capture-pane", "-p", "-S", "-", "-t", "demo"]
        } else {
            &["capture-pane", "-p", "-t", "demo"]
        };
        let out = self.tmux(args);
        assert!(out.status.success(), "tmux capture-pane: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn format(&self, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", "demo", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits (bounded) until the screen satisfies `ready`; returns it.
    fn wait_for(&self, what: &str, within: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.capture(false);
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {what} within {within:?}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends Ctrl-C as the keyboard does; waits (bounded) for the demo to exit, returns its
    /// exit status as bash printed it.
    fn interrupt(&self) -> String {
        let out = self.tmux(&["send-keys", "-t", "demo", "C-c"]);
        assert!(out.status.success(), "tmux send-keys: {}", String::from_utf8_lossy(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.format("#{pane_dead}") != "1" {
            assert!(
                Instant::now() < deadline,
                "the demo did not exit within 30 s of Ctrl-C:\n{}",
                self.capture(true)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let screen = self.capture(true);
        let status = screen.lines().find_map(|l| l.strip_prefix("parallax exited with status "));
        status.unwrap_or_else(|| panic!("no exit status on the screen:\n{screen}")).trim().to_owned()
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        // The demo gets SIGHUP with its pane, and stops.
        let _ = self.tmux(&["kill-server"]);
    }
}

/// Every line within `width`, no non-empty line twice; `what` names the screen in failures.
fn assert_fits_without_repeats(screen: &str, width: usize, what: &str) {
    let mut seen = std::collections::HashSet::new();
    for line in screen.lines() {
        assert!(line.chars().count() <= width, "{what}: a line wider than {width}: {line:?}\n{screen}");
        if !line.trim().is_empty() {
            assert!(seen.insert(line), "{what}: a line twice: {line:?}\n{screen}");
        }
    }
}

/// The dashboard URL on `screen`, on its first line.
fn url_on_top(screen: &str) -> String {
    let first = screen.lines().next().unwrap_or_default();
    let url = first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:"));
    url.unwrap_or_else(|| panic!("the dashboard URL on the first line:\n{screen}")).to_owned()
}

/// Runs the demo in a `width`×`height` pane; returns the live screen once every mismatch is
/// open and the final one after Ctrl-C, both checked for fit and repeats.
fn live_and_final(width: usize, height: usize) -> (String, String) {
    let pane = Pane::start(width, height);
    assert_eq!((pane.width, pane.height), (width, height));
    let size = pane.format("#{pane_width}x#{pane_height}");
    assert_eq!(size, format!("{width}x{height}"), "the pane's size");
    let live = pane
        .wait_for("table with every mismatch open", MISMATCHES_WITHIN, |s| s.contains("7 open mismatches"));
    let url = url_on_top(&live);
    assert_eq!(live.lines().count(), height, "tmux shows the whole screen");
    // Several redraws, each read as it stands: never wider, never a row twice, the URL on top.
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        let screen = pane.capture(false);
        assert_fits_without_repeats(&screen, width, &format!("{width}x{height}, redraw {i}"));
        assert_eq!(url_on_top(&screen), url, "{screen}");
    }
    // The live frames are drawn on the alternate screen: nothing piles up in the scrollback.
    let history = pane.capture(true);
    assert_fits_without_repeats(&history, width, &format!("{width}x{height}, scrollback while live"));

    let status = pane.interrupt();
    assert_eq!(status, "0", "the demo exits 0 on Ctrl-C");
    let last = pane.capture(true);
    assert_fits_without_repeats(&last, width, &format!("{width}x{height}, after Ctrl-C"));
    assert!(last.contains("parallax demo stopped after"), "the final snapshot:\n{last}");
    assert!(last.contains(&format!("{url} is closed")), "{last}");
    (live, last)
}

/// Every view's row and every reason are in `snapshot`.
fn assert_complete(snapshot: &str, what: &str) {
    assert!(snapshot.contains("8 targets, 17 views, 7 open mismatches"), "{what}:\n{snapshot}");
    let rows = snapshot.lines().filter(|l| l.contains("healthy  ")).count();
    assert_eq!(rows, 17, "{what}: a row per view:\n{snapshot}");
    // Every reason, whole: its words run on across the wrapped lines up to the next reason.
    let why = snapshot.split("\nWhy:\n").nth(1).unwrap_or_else(|| panic!("{what}: no Why:\n{snapshot}"));
    for (target, checker, diagnosis) in EXPECTED {
        let head = format!("  {target}/{checker}: {diagnosis} — ");
        assert!(why.lines().any(|l| l.starts_with(&head)), "{what}: {head:?}\n{snapshot}");
    }
    let reasons = why.lines().filter(|l| l.starts_with("  ") && !l.starts_with("    ")).count();
    assert_eq!(reasons, 7, "{what}: one reason per mismatch:\n{why}");
    assert!(!snapshot.contains('…'), "{what}: nothing cut:\n{snapshot}");
}

#[test]
fn the_demo_fits_80_by_24_and_its_final_snapshot_is_complete() {
    let (live, last) = live_and_final(80, 24);
    // Fewer columns: no profile, no latency; the rest below, with the dashboard's address.
    assert!(live.contains("TARGET") && !live.contains("PROFILE"), "{live}");
    let more =
        live.lines().find(|l| l.starts_with("… ")).unwrap_or_else(|| panic!("a 'more lines' line:\n{live}"));
    assert!(more.contains("more lines: see http://127.0.0.1:"), "{more}");
    // The views that pass and agree are folded, so the first reasons are on the screen too.
    assert!(live.contains("views that pass and agree folded"), "{live}");
    assert!(live.lines().any(|l| l.starts_with("healthy ") && l.contains("3 views")), "{live}");
    assert!(live.contains("\nWhy:\n  shallow-health/alb: shallow_health_path — "), "{live}");
    assert_complete(&last, "80x24, the final snapshot");
    // Wrapped, not cut: some reason takes more than one line of 80.
    assert!(last.lines().any(|l| l.starts_with("    ") && !l.trim().is_empty()), "{last}");
}

#[test]
fn the_demo_uses_the_width_of_a_wide_terminal() {
    let (live, last) = live_and_final(200, 50);
    // Every column, the latencies, and every reason on the screen itself; nothing folded.
    assert!(!live.contains("folded"), "{live}");
    assert!(live.contains("PROFILE") && live.contains("blackhole: shallow_health_path"), "{live}");
    assert!(live.lines().any(|l| l.contains("200 · ") && l.contains("ms")), "latencies:\n{live}");
    assert!(!live.contains("more lines"), "it all fits in 200x50:\n{live}");
    assert!(live.lines().any(|l| l.chars().count() > 120), "the width is used:\n{live}");
    assert_complete(&live, "200x50, live");
    assert_complete(&last, "200x50, the final snapshot");
}
