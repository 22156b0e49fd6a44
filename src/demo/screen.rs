//! The demo's terminal side: the status document as a table, redrawn in place (a live terminal)
//! or printed as a snapshot whenever something a reader cares about changed (pipes and logs).

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

use tokio::time::Instant;

use super::Display;
use crate::admin::AdminState;
use crate::status::{StatusDoc, TargetStatus, ViewStatus};

/// What the terminal shows of a running demo, and where: the frames of [`Display`] on a
/// [`Screen`] (none without one).
pub(super) struct Console {
    screen: Option<Screen>,
    display: Display,
    url: String,
    /// The address asked for when it was taken (the header says so).
    taken: Option<SocketAddr>,
    started: Instant,
    deadline: Option<Instant>,
    /// Of the last snapshot printed.
    last_fingerprint: String,
}

impl Console {
    /// Shows `display` on `out` (no table without it) for the dashboard at `url`; the demo
    /// started at `started` and stops at `deadline`.
    pub(super) fn start(
        out: Option<Box<dyn Write + Send>>,
        display: Display,
        url: String,
        taken: Option<SocketAddr>,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Console {
        Console {
            screen: out.map(Screen::start),
            display,
            url,
            taken,
            started,
            deadline,
            last_fingerprint: String::new(),
        }
    }

    /// Shows the opening banner: snapshots start with it, live frames carry the URL in their
    /// header instead, and without a table it goes to stderr.
    pub(super) fn banner(&self, banner: &str) {
        match (&self.screen, self.display) {
            (Some(screen), Display::Snapshots) => screen.show(banner.to_owned()),
            (Some(_), Display::Live { .. }) => {}
            _ => eprint!("{banner}"),
        }
    }

    /// Redraws the live table, or prints a snapshot if anything changed since the last one.
    pub(super) fn refresh(&mut self, state: &impl AdminState) {
        let Some(screen) = &self.screen else { return };
        let doc = state.status();
        let header = header_line(&self.url, self.taken, self.started.elapsed(), self.deadline);
        match self.display {
            Display::Live { color } => {
                let size = terminal_size::terminal_size().map(|(w, h)| (usize::from(w.0), usize::from(h.0)));
                screen.show(live_frame(&table(&doc, &header, size.map(|s| s.0), color), size.map(|s| s.1)));
            }
            Display::Snapshots => {
                let fingerprint = fingerprint(&doc);
                if fingerprint != self.last_fingerprint {
                    screen.show(format!("\n{}", table(&doc, &header, None, false)));
                    self.last_fingerprint = fingerprint;
                }
            }
            Display::Off => {}
        }
    }

    /// Shows the final table (or, without one, the closing line on stderr) and waits until it is
    /// written.
    pub(super) fn finish(self, state: &impl AdminState) {
        let doc = state.status();
        let header = format!(
            "parallax demo stopped after {} — {} is closed",
            uptime(self.started.elapsed()),
            self.url
        );
        match (self.screen, self.display) {
            (Some(screen), Display::Live { color }) => {
                let width = terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
                screen.finish(format!("{CLEAR}{}", table(&doc, &header, width, color)));
            }
            (Some(screen), Display::Snapshots) => {
                screen.finish(format!("\n{}", table(&doc, &header, None, false)))
            }
            _ => eprintln!("{header}"),
        }
    }
}

/// Cursor home and clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// The line above a running demo's table: the dashboard, how long it has run, how it stops.
fn header_line(url: &str, taken: Option<SocketAddr>, up: Duration, deadline: Option<Instant>) -> String {
    let taken = taken.map(|a| format!(" ({a} was in use)")).unwrap_or_default();
    let end = match deadline {
        Some(at) => format!("stops in {}", uptime(at.saturating_duration_since(Instant::now()))),
        None => "Ctrl-C to stop".to_owned(),
    };
    format!("parallax demo — dashboard {url}{taken} — up {} — {end}", uptime(up))
}

/// "42s", "3m07s".
fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A frame for the live display: drawn from the top left, cut to the terminal's `height` (a
/// frame taller than the screen would scroll and leave stale lines behind).
fn live_frame(table: &str, height: Option<usize>) -> String {
    let lines: Vec<&str> = table.lines().collect();
    let room = height.map_or(lines.len(), |h| h.saturating_sub(1).max(1));
    let mut frame = String::from(CLEAR);
    if lines.len() <= room {
        frame.push_str(table);
    } else {
        for line in &lines[..room - 1] {
            frame.push_str(line);
            frame.push('\n');
        }
        let _ = writeln!(frame, "… {} more lines: see the dashboard", lines.len() - (room - 1));
    }
    frame
}

/// The status document as a table: one row per view (verdict, last probe, the mismatch it is
/// part of), then the evidence of each open mismatch, cut to `width` characters when given.
pub fn table(doc: &StatusDoc, header: &str, width: Option<usize>, color: bool) -> String {
    let mismatches: usize = doc.targets.iter().map(|t| t.mismatches.len()).sum();
    let views: usize = doc.targets.iter().map(|t| t.views.len()).sum();
    let mut rows: Vec<[String; 6]> =
        vec![["TARGET", "VIEW", "PROFILE", "VERDICT", "LAST PROBE", "MISMATCH"].map(str::to_owned)];
    for t in &doc.targets {
        for (i, v) in t.views.iter().enumerate() {
            rows.push([
                if i == 0 { t.name.clone() } else { String::new() },
                v.name.clone(),
                v.profile.map_or_else(|| "-".to_owned(), |p| p.as_str().to_owned()),
                v.verdict.state.to_owned(),
                last_probe(v),
                mismatch_cell(t, v),
            ]);
        }
    }
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();

    let mut out = format!(
        "{header}\n{}, {}, {}\n\n",
        plural(doc.targets.len(), "target"),
        plural(views, "view"),
        plural(mismatches, "open mismatch"),
    );
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let padded = format!("{cell:<w$}", w = widths[c]);
            let style = match (i, c) {
                (0, _) => Some("1"),
                (_, 3) => Some(match cell.as_str() {
                    "healthy" => "32",
                    "unhealthy" => "31",
                    _ => "2",
                }),
                (_, 5) if !cell.is_empty() => Some("33"),
                _ => None,
            };
            match style.filter(|_| color) {
                Some(style) => {
                    let _ = write!(line, "\x1b[{style}m{padded}\x1b[0m  ");
                }
                None => {
                    let _ = write!(line, "{padded}  ");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if mismatches > 0 {
        out.push_str("\nWhy:\n");
        for t in &doc.targets {
            for m in &t.mismatches {
                let flipped: Vec<&str> = m.mismatch.flipped.iter().map(|a| a.as_str()).collect();
                let flipped = if flipped.is_empty() {
                    String::new()
                } else {
                    format!(" [flipped: {}]", flipped.join(", "))
                };
                let line =
                    format!("  {}/{}: {}{flipped}", t.name, m.mismatch.checker_view, m.mismatch.evidence);
                out.push_str(&cut(&line, width));
                out.push('\n');
            }
        }
    }
    out
}

/// "1 view", "2 views", "3 open mismatches".
fn plural(n: usize, noun: &str) -> String {
    match (n, noun.ends_with("ch")) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

/// "200 · 1.3 ms", "http_tls_required · 0.4 ms", "no_local_endpoints 503 · 0.6 ms".
fn last_probe(v: &ViewStatus) -> String {
    let Some(o) = &v.last_outcome else { return "waiting for the first probe".to_owned() };
    let what = match (o.error, o.status) {
        (Some(e), Some(s)) => format!("{} {s}", e.as_str()),
        (Some(e), None) => e.as_str().to_owned(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "ok".to_owned(),
    };
    format!("{what} · {:.1} ms", o.timings.total.as_secs_f64() * 1e3)
}

/// "blackhole: shallow_health_path" on the row of a checker in an open mismatch.
fn mismatch_cell(t: &TargetStatus, v: &ViewStatus) -> String {
    t.mismatches
        .iter()
        .filter(|m| *m.mismatch.checker_view == *v.name)
        .map(|m| format!("{}: {}", m.mismatch.direction.as_str(), m.mismatch.diagnosis))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `line` cut to `width` characters with an ellipsis.
fn cut(line: &str, width: Option<usize>) -> String {
    match width {
        Some(w) if line.chars().count() > w => {
            let mut s: String = line.chars().take(w.saturating_sub(1)).collect();
            s.push('…');
            s
        }
        _ => line.to_owned(),
    }
}

/// What a snapshot is printed for: verdicts, last results and mismatches, not latencies.
fn fingerprint(doc: &StatusDoc) -> String {
    let mut f = String::new();
    for t in &doc.targets {
        for v in &t.views {
            let last = v.last_outcome.as_ref().map(|o| (o.error.map(|e| e.as_str()), o.status));
            let _ = write!(f, "{}/{}={}:{last:?};", t.name, v.name, v.verdict.state);
        }
        for m in &t.mismatches {
            let _ = write!(
                f,
                "{}/{}!{}:{};",
                t.name,
                m.mismatch.checker_view,
                m.mismatch.direction.as_str(),
                m.mismatch.diagnosis
            );
        }
    }
    f
}

/// Writes frames to the terminal from a thread of its own: a terminal (or pipe) that does not
/// read must stall neither the runtime nor the probes. A frame that finds the writer busy is
/// dropped; the next one replaces it.
struct Screen {
    frames: SyncSender<String>,
    done: Receiver<()>,
}

impl Screen {
    fn start(mut out: Box<dyn Write + Send>) -> Screen {
        let (frames, rx) = sync_channel::<String>(2);
        let (done_tx, done) = sync_channel(1);
        let spawned = std::thread::Builder::new().name("parallax-demo-screen".to_owned()).spawn(move || {
            while let Ok(frame) = rx.recv() {
                if out.write_all(frame.as_bytes()).and_then(|()| out.flush()).is_err() {
                    // Nobody reads any more (a closed pipe): the demo carries on without a table.
                    break;
                }
            }
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the terminal writer ({e}); no table is shown");
        }
        Screen { frames, done }
    }

    fn show(&self, frame: String) {
        let _ = self.frames.try_send(frame);
    }

    /// Shows the last frame and waits (up to 2 s) until it is written.
    fn finish(self, frame: String) {
        let Screen { frames, done } = self;
        let _ = frames.try_send(frame);
        drop(frames);
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_live_frame_never_outgrows_the_terminal() {
        let table: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let frame = live_frame(&table, Some(24));
        assert!(frame.starts_with(CLEAR));
        assert_eq!(frame.lines().count(), 23, "{frame}");
        assert!(frame.contains("… 18 more lines"), "{frame}");
        assert_eq!(live_frame("a\nb\n", Some(24)), format!("{CLEAR}a\nb\n"));
    }

    #[test]
    fn cut_keeps_short_lines_and_ellipsizes_long_ones() {
        assert_eq!(cut("abcdef", Some(4)), "abc…");
        assert_eq!(cut("abc", Some(4)), "abc");
        assert_eq!(cut("abcdef", None), "abcdef");
    }

    fn status_doc() -> StatusDoc {
        use crate::config::{ProfileName, Role};
        use crate::diff::{Attribute, Basis, Diagnosis, Direction, Mismatch};
        use crate::probe::{ErrorCode, Outcome, Phase, RequestSummary, Timings};
        use crate::status::{OpenMismatchStatus, VerdictStatus};

        let verdict = |state| VerdictStatus {
            state,
            since: None,
            consecutive_ok: 0,
            consecutive_fail: 0,
            rise: 2,
            fall: 2,
        };
        let outcome = Outcome {
            target: "shallow-health".into(),
            view: "client".into(),
            role: Role::Client,
            profile: None,
            ok: false,
            phase: Some(Phase::Http),
            error: Some(ErrorCode::HttpStatus),
            detail: None,
            status: Some(503),
            location: None,
            grpc_status: None,
            local_endpoints: None,
            timings: Timings { total: Duration::from_micros(1250), ..Timings::default() },
            peer: None,
            local: None,
            request: RequestSummary::default(),
            tls: None,
            resolved: Vec::new(),
            body_bytes: None,
        };
        let view = |name: &str, role, profile, state, last_outcome| ViewStatus {
            name: name.to_owned(),
            role,
            profile,
            url: String::new(),
            interval_ms: 1000,
            verdict: verdict(state),
            last_outcome,
            recent: Vec::new(),
            probes: 0,
            failures: 0,
            skipped: 0,
        };
        let mismatch = Mismatch {
            target: "shallow-health".into(),
            client_view: "client".into(),
            checker_view: "alb".into(),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
            flipped: vec![Attribute::Path],
            evidence: "client got 503 while the checker passes with path /healthz".to_owned(),
            causes: Vec::new(),
            basis: Basis::Probes,
            client_address: None,
            checker_address: None,
            client_error: Some(ErrorCode::HttpStatus),
            checker_error: None,
            attribution: None,
        };
        StatusDoc {
            targets: vec![TargetStatus {
                name: "shallow-health".to_owned(),
                views: vec![
                    view("client", Role::Client, None, "unhealthy", Some(outcome)),
                    view("alb", Role::Checker, Some(ProfileName::AwsAlb), "healthy", None),
                ],
                mismatches: vec![OpenMismatchStatus {
                    mismatch,
                    since: String::new(),
                    opened_at: String::new(),
                    open_for_s: 1.0,
                }],
                cluster: None,
                explained: None,
            }],
            ..StatusDoc::default()
        }
    }

    #[test]
    fn the_table_shows_views_verdicts_last_probes_and_mismatches() {
        let doc = status_doc();
        let plain = table(&doc, "HEADER", None, false);
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines[0], "HEADER");
        assert_eq!(lines[1], "1 target, 2 views, 1 open mismatch");
        assert!(lines[3].starts_with("TARGET          VIEW    PROFILE  VERDICT    LAST PROBE"), "{plain}");
        assert!(
            lines[4].starts_with("shallow-health  client  -        unhealthy  http_status 503 · 1.2 ms"),
            "{plain}"
        );
        assert!(
            lines[5].starts_with("                alb     aws-alb  healthy    waiting for the first probe"),
            "{plain}"
        );
        assert!(lines[5].ends_with("blackhole: shallow_health_path"), "{plain}");
        assert_eq!(lines[7], "Why:");
        assert_eq!(
            lines[8],
            "  shallow-health/alb: client got 503 while the checker passes with path /healthz [flipped: path]"
        );
        assert!(!plain.contains('\x1b'));

        let narrow = table(&doc, "HEADER", Some(40), true);
        assert!(
            narrow.contains("\x1b[31munhealthy\x1b[0m") && narrow.contains("\x1b[32mhealthy"),
            "{narrow}"
        );
        assert!(
            narrow.lines().last().is_some_and(|l| l.chars().count() == 40 && l.ends_with('…')),
            "{narrow}"
        );
    }

    #[test]
    fn snapshots_follow_verdicts_results_and_mismatches_not_latencies() {
        let doc = status_doc();
        let mut slower = doc.clone();
        if let Some(o) = slower.targets[0].views[0].last_outcome.as_mut() {
            o.timings.total = Duration::from_millis(40);
        }
        assert_eq!(fingerprint(&doc), fingerprint(&slower));
        let mut healed = doc.clone();
        healed.targets[0].mismatches.clear();
        assert_ne!(fingerprint(&doc), fingerprint(&healed));
        let mut flipped = doc.clone();
        flipped.targets[0].views[1].verdict.state = "unhealthy";
        assert_ne!(fingerprint(&doc), fingerprint(&flipped));
    }
}
