//! The demo's terminal side: the status document as a table, redrawn in place (a live terminal)
//! or printed as a snapshot whenever something a reader cares about changed (pipes and logs).
//!
//! The table fits the terminal it is drawn on: every line within its width (columns dropped,
//! then condensed, as it narrows — the profile, then the diagnosis, which the "Why" lines
//! still give, then the latency; "Why" lines wrapped, never cut), every frame within its
//! height (the views that pass and agree folded first, then cut at the bottom, the header with
//! the dashboard's URL always on top). Live frames
//! are drawn on the terminal's alternate screen, each line overwritten in place, so redraws
//! leave no copies in the scrollback; at the end the terminal's own screen is back and the final
//! snapshot is printed on it in full.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Display;
use crate::admin::AdminState;
use crate::duration::{human, Human};
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
            (Some(screen), Display::Snapshots) => screen.show(Frame::Plain(banner.to_owned())),
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
                let (width, height) = terminal();
                let table = fitted(&doc, &header, width, height, color);
                screen.show(Frame::Live(live_frame(&table, height, &self.url)));
            }
            Display::Snapshots => {
                let fingerprint = fingerprint(&doc);
                if fingerprint != self.last_fingerprint {
                    screen.show(Frame::Plain(format!("\n{}", table(&doc, &header, None, false))));
                    self.last_fingerprint = fingerprint;
                }
            }
            Display::Off => {}
        }
    }

    /// Shows the final table, complete (or, without one, the closing line on stderr), and waits
    /// until it is written.
    pub(super) fn finish(self, state: &impl AdminState) {
        let doc = state.status();
        let header = format!(
            "parallax demo stopped after {} — {} is closed",
            uptime(self.started.elapsed()),
            self.url
        );
        match (self.screen, self.display) {
            (Some(screen), Display::Live { color }) => {
                screen.finish(Frame::Plain(table(&doc, &header, terminal().0, color)));
            }
            (Some(screen), Display::Snapshots) => {
                screen.finish(Frame::Plain(format!("\n{}", table(&doc, &header, None, false))))
            }
            _ => eprintln!("{header}"),
        }
    }
}

/// The terminal's width and height, when stdout is one.
fn terminal() -> (Option<usize>, Option<usize>) {
    match terminal_size::terminal_size() {
        Some((w, h)) => (Some(usize::from(w.0)), Some(usize::from(h.0))),
        None => (None, None),
    }
}

/// Cursor home: a live frame is drawn over the last one, line by line.
const HOME: &str = "\x1b[H";
/// Erase the whole line (before it is written: erasing after a line as wide as the terminal
/// would take its last character, the cursor resting on it).
const ERASE_LINE: &str = "\x1b[2K";
/// Erase from the cursor to the end of the screen: what the last frame had below this one.
const ERASE_BELOW: &str = "\x1b[J";
/// Switch to the alternate screen and hide the cursor, as full-screen programs do.
const ENTER_LIVE: &str = "\x1b[?1049h\x1b[?25l";
/// Back to the terminal's own screen, cursor shown.
const LEAVE_LIVE: &str = "\x1b[?25h\x1b[?1049l";

/// The line above a running demo's table: the dashboard, how long it has run, how it stops.
fn header_line(url: &str, taken: Option<SocketAddr>, up: Duration, deadline: Option<Instant>) -> String {
    let taken = taken.map(|a| format!(" ({a} was in use)")).unwrap_or_default();
    let end = match deadline {
        Some(at) => format!("stops in {}", uptime(at.saturating_duration_since(Instant::now()))),
        None => "Ctrl-C to stop".to_owned(),
    };
    format!("parallax demo — dashboard {url}{taken} — up {} — {end}", uptime(up))
}

/// Whole seconds: "42s", "3m7s".
fn uptime(d: Duration) -> String {
    human(Duration::from_secs(d.as_secs()))
}

/// A frame for the live display: drawn from the top left over the last one, cut to the
/// terminal's `height` (a frame taller than the screen would scroll) with a last line sending
/// the reader to the dashboard at `url` for the rest.
fn live_frame(table: &str, height: Option<usize>, url: &str) -> String {
    let lines: Vec<&str> = table.lines().collect();
    // The last row stays empty: a newline there would scroll the screen.
    let room = height.map_or(lines.len(), |h| h.saturating_sub(1).max(2));
    let mut frame = String::from(HOME);
    let shown = if lines.len() <= room { lines.len() } else { room - 1 };
    for line in &lines[..shown] {
        let _ = writeln!(frame, "{ERASE_LINE}{line}");
    }
    if shown < lines.len() {
        let _ = writeln!(frame, "{ERASE_LINE}… {} more lines: see {url}", lines.len() - shown);
    }
    frame.push_str(ERASE_BELOW);
    frame
}

/// The columns, in order.
const COLUMNS: [&str; 6] = ["TARGET", "VIEW", "PROFILE", "VERDICT", "LAST PROBE", "MISMATCH"];
/// The gap between two columns.
const GAP: usize = 2;

/// What the table shows, from the widest to the narrowest: the first that fits is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// The PROFILE column.
    profile: bool,
    /// The diagnosis next to the direction in MISMATCH (the "Why" lines name it either way).
    diagnosis: bool,
    /// The latency in LAST PROBE.
    latency: bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout { profile: true, diagnosis: true, latency: true },
    Layout { profile: false, diagnosis: true, latency: true },
    Layout { profile: false, diagnosis: false, latency: true },
    Layout { profile: false, diagnosis: false, latency: false },
];

/// The status document as a table: one row per view (verdict, last probe, the mismatch it is
/// part of), then why each open mismatch is one. With a `width`, every line fits it: the first
/// [`Layout`] whose rows fit is used (in the narrowest, a row too long is cut), and the header
/// and the "Why" lines are wrapped.
pub fn table(doc: &StatusDoc, header: &str, width: Option<usize>, color: bool) -> String {
    render(doc, header, width, color, false)
}

/// [`table`] for a live frame `height` lines tall at most: when the whole table is taller, the
/// views that pass and agree are folded into one line per target, so that the "Why" lines of
/// the disagreements get the room.
fn fitted(doc: &StatusDoc, header: &str, width: Option<usize>, height: Option<usize>, color: bool) -> String {
    let whole = render(doc, header, width, color, false);
    match height {
        Some(h) if whole.lines().count() >= h => render(doc, header, width, color, true),
        _ => whole,
    }
}

/// [`table`], with the views that pass and agree folded when `fold`.
fn render(doc: &StatusDoc, header: &str, width: Option<usize>, color: bool, fold: bool) -> String {
    let mismatches: usize = doc.targets.iter().map(|t| t.mismatches.len()).sum();
    let views: usize = doc.targets.iter().map(|t| t.views.len()).sum();
    let (rows, widths) = LAYOUTS
        .iter()
        .map(|layout| {
            let rows = rows(doc, *layout, fold);
            let widths = column_widths(&rows);
            (rows, widths)
        })
        .find(|(_, widths)| width.is_none_or(|w| line_width(widths) <= w))
        .unwrap_or_else(|| {
            let rows = rows(doc, LAYOUTS[LAYOUTS.len() - 1], fold);
            let widths = column_widths(&rows);
            (rows, widths)
        });

    let mut out = String::new();
    for line in wrap(header, width, "", "  ") {
        let _ = writeln!(out, "{line}");
    }
    let counts = format!(
        "{}, {}, {}{}",
        plural(doc.targets.len(), "target"),
        plural(views, "view"),
        plural(mismatches, "open mismatch"),
        if fold { "; views that pass and agree folded" } else { "" },
    );
    for line in wrap(&counts, width, "", "  ") {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    for (i, row) in rows.iter().enumerate() {
        let mut plain = String::new();
        let mut styled = String::new();
        for (c, (name, cell)) in row.iter().enumerate() {
            // The last column is not padded: nothing follows it.
            let (w, gap) = if c + 1 < row.len() { (widths[c], GAP) } else { (0, 0) };
            let padded = format!("{cell:<w$}{:gap$}", "");
            plain.push_str(&padded);
            let style = match (i, *name) {
                (0, _) => Some("1"),
                (_, "VERDICT") => Some(match cell.as_str() {
                    "healthy" => "32",
                    "unhealthy" => "31",
                    _ => "2",
                }),
                (_, "MISMATCH") if !cell.is_empty() => Some("33"),
                _ => None,
            };
            match style.filter(|_| color) {
                Some(style) => {
                    let _ =
                        write!(styled, "\x1b[{style}m{}\x1b[0m{:gap$}", &padded[..padded.len() - gap], "");
                }
                None => styled.push_str(&padded),
            }
        }
        let fits = width.is_none_or(|w| plain.trim_end().chars().count() <= w);
        let line = if fits { styled.trim_end().to_owned() } else { cut(plain.trim_end(), width) };
        out.push_str(&line);
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
                let why = format!(
                    "{}/{}: {} — {}{flipped}",
                    t.name, m.mismatch.checker_view, m.mismatch.diagnosis, m.mismatch.evidence
                );
                for line in wrap(&why, width, "  ", "    ") {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }
    out
}

/// The column names and cells of the table's header row and of one row per view, as `layout`
/// shows them; with `fold`, only the views that fail or disagree, and one row for a target
/// whose views all pass and agree.
fn rows(doc: &StatusDoc, layout: Layout, fold: bool) -> Vec<Vec<(&'static str, String)>> {
    let columns: Vec<&'static str> =
        COLUMNS.iter().copied().filter(|name| *name != "PROFILE" || layout.profile).collect();
    let mut rows: Vec<Vec<(&'static str, String)>> =
        vec![columns.iter().map(|name| (*name, (*name).to_owned())).collect()];
    for t in &doc.targets {
        let shown: Vec<&ViewStatus> = t
            .views
            .iter()
            .filter(|v| !fold || v.verdict.state != "healthy" || !mismatch_cell(t, v, false).is_empty())
            .collect();
        if shown.is_empty() && !t.views.is_empty() {
            let cell = |name: &str| match name {
                "TARGET" => t.name.clone(),
                "VIEW" => plural(t.views.len(), "view"),
                "VERDICT" => "healthy".to_owned(),
                _ => String::new(),
            };
            rows.push(columns.iter().map(|name| (*name, cell(name))).collect());
        }
        for (i, v) in shown.into_iter().enumerate() {
            let cell = |name: &str| match name {
                "TARGET" if i == 0 => t.name.clone(),
                "TARGET" => String::new(),
                "VIEW" => v.name.clone(),
                "PROFILE" => v.profile.map_or_else(|| "-".to_owned(), |p| p.as_str().to_owned()),
                "VERDICT" => v.verdict.state.to_owned(),
                "LAST PROBE" => last_probe(v, layout.latency),
                _ => mismatch_cell(t, v, layout.diagnosis),
            };
            rows.push(columns.iter().map(|name| (*name, cell(name))).collect());
        }
    }
    rows
}

/// The width of each column of `rows`.
fn column_widths(rows: &[Vec<(&'static str, String)>]) -> Vec<usize> {
    let columns = rows.first().map_or(0, Vec::len);
    (0..columns).map(|c| rows.iter().map(|r| r[c].1.chars().count()).max().unwrap_or(0)).collect()
}

/// The width of a row whose last column is full.
fn line_width(widths: &[usize]) -> usize {
    widths.iter().sum::<usize>() + GAP * widths.len().saturating_sub(1)
}

/// "1 view", "2 views", "3 open mismatches".
fn plural(n: usize, noun: &str) -> String {
    match (n, noun.ends_with("ch")) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

/// "200 · 1.3ms", "http_tls_required · 0.4ms", "no_local_endpoints 503 · 0.6ms"; without the
/// latency when `latency` is false.
fn last_probe(v: &ViewStatus, latency: bool) -> String {
    let Some(o) = &v.last_outcome else { return "no probe yet".to_owned() };
    let what = match (o.error, o.status) {
        (Some(e), Some(s)) => format!("{} {s}", e.as_str()),
        (Some(e), None) => e.as_str().to_owned(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "ok".to_owned(),
    };
    if latency {
        format!("{what} · {}", Human(o.timings.total))
    } else {
        what
    }
}

/// "blackhole: shallow_health_path" (or "blackhole" alone, without `diagnosis`) on the row of a
/// checker in an open mismatch.
fn mismatch_cell(t: &TargetStatus, v: &ViewStatus, diagnosis: bool) -> String {
    t.mismatches
        .iter()
        .filter(|m| *m.mismatch.checker_view == *v.name)
        .map(|m| {
            if diagnosis {
                format!("{}: {}", m.mismatch.direction.as_str(), m.mismatch.diagnosis)
            } else {
                m.mismatch.direction.as_str().to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than a
/// line is split), the first line starting with `first` and the others with `rest`.
fn wrap(text: &str, width: Option<usize>, first: &str, rest: &str) -> Vec<String> {
    let Some(width) = width else { return vec![format!("{first}{text}")] };
    let mut lines = Vec::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let sep = usize::from(!empty);
            if used + sep + word.len() <= width {
                if !empty {
                    line.push(' ');
                }
                line.extend(word.iter());
                empty = false;
                break;
            }
            if !empty {
                lines.push(std::mem::replace(&mut line, rest.to_owned()));
                empty = true;
                continue;
            }
            // A word wider than a whole line: as much of it as fits, the rest on the next.
            let room = width.saturating_sub(used).max(1);
            let tail = word.split_off(room.min(word.len()));
            line.extend(word.iter());
            lines.push(std::mem::replace(&mut line, rest.to_owned()));
            if tail.is_empty() {
                break;
            }
            word = tail;
        }
    }
    if !empty || lines.is_empty() {
        lines.push(line);
    }
    lines
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

/// One frame for the terminal.
enum Frame {
    /// Drawn on the alternate screen, over the last live frame.
    Live(String),
    /// Printed on the terminal's own screen (a snapshot, the banner, the final table).
    Plain(String),
}

/// Most snapshot text held for a terminal that does not read.
const MAX_PENDING_BYTES: usize = 256 * 1024;

/// The frame waiting to be written, and whether more will come.
#[derive(Default)]
struct Slot {
    next: Option<Frame>,
    closed: bool,
}

/// Writes frames to the terminal from a thread of its own: a terminal (or pipe) that does not
/// read must stall neither the runtime nor the probes. A frame not yet written when the next
/// comes is replaced by it: only the latest matters, and the final one is never lost.
struct Screen {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    done: Receiver<()>,
}

impl Screen {
    fn start(mut out: Box<dyn Write + Send>) -> Screen {
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let (done_tx, done) = sync_channel(1);
        let shared = slot.clone();
        let spawned = std::thread::Builder::new().name("parallax-demo-screen".to_owned()).spawn(move || {
            let (lock, ready) = &*shared;
            // Whether the alternate screen is on: entered before the first live frame, left
            // before anything plain.
            let mut live = false;
            loop {
                let frame = {
                    let mut slot = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    while slot.next.is_none() && !slot.closed {
                        slot = ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
                    }
                    match slot.next.take() {
                        Some(frame) => frame,
                        None => break,
                    }
                };
                let bytes = match frame {
                    Frame::Live(f) if !live => {
                        live = true;
                        format!("{ENTER_LIVE}{f}")
                    }
                    Frame::Plain(f) if live => {
                        live = false;
                        format!("{LEAVE_LIVE}{f}")
                    }
                    Frame::Live(f) | Frame::Plain(f) => f,
                };
                if out.write_all(bytes.as_bytes()).and_then(|()| out.flush()).is_err() {
                    // Nobody reads any more (a closed pipe): the demo carries on without a table.
                    break;
                }
            }
            if live {
                let _ = out.write_all(LEAVE_LIVE.as_bytes()).and_then(|()| out.flush());
            }
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the terminal writer ({e}); no table is shown");
        }
        Screen { slot, done }
    }

    fn show(&self, frame: Frame) {
        let (lock, ready) = &*self.slot;
        let mut slot = lock.lock().unwrap_or_else(PoisonError::into_inner);
        // A snapshot is never replaced by a later one before it is printed: each says what
        // changed. Live frames are: only the latest is worth drawing.
        // (Bounded: a reader that stalls for good gets the latest snapshots only.)
        match (slot.next.as_mut(), frame) {
            (Some(Frame::Plain(pending)), Frame::Plain(more))
                if pending.len() + more.len() <= MAX_PENDING_BYTES =>
            {
                pending.push_str(&more)
            }
            (_, frame) => slot.next = Some(frame),
        }
        ready.notify_one();
    }

    /// Shows the last frame and waits (up to 2 s) until it is written.
    fn finish(self, frame: Frame) {
        self.show(frame);
        {
            let (lock, ready) = &*self.slot;
            lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
            ready.notify_one();
        }
        let _ = self.done.recv_timeout(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_live_frame_never_outgrows_the_terminal() {
        let table: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let frame = live_frame(&table, Some(24), "http://127.0.0.1:9464/");
        assert!(frame.starts_with(HOME) && frame.ends_with(ERASE_BELOW), "{frame:?}");
        assert_eq!(frame.trim_end_matches(ERASE_BELOW).lines().count(), 23, "{frame}");
        assert!(frame.contains("line 21\n") && !frame.contains("line 22"), "{frame}");
        assert!(frame.contains("… 18 more lines: see http://127.0.0.1:9464/"), "{frame}");
        // Each line is erased before it is written, never after (that would take the last
        // character of a line as wide as the terminal).
        assert_eq!(
            live_frame("a\nb\n", Some(24), "u"),
            format!("{HOME}{ERASE_LINE}a\n{ERASE_LINE}b\n{ERASE_BELOW}")
        );
    }

    #[test]
    fn cut_keeps_short_lines_and_ellipsizes_long_ones() {
        assert_eq!(cut("abcdef", Some(4)), "abc…");
        assert_eq!(cut("abc", Some(4)), "abc");
        assert_eq!(cut("abcdef", None), "abcdef");
    }

    #[test]
    fn wrap_breaks_between_words_and_splits_only_words_wider_than_a_line() {
        assert_eq!(wrap("aaa bbb ccc", Some(8), "  ", "    "), ["  aaa", "    bbb", "    ccc"]);
        assert_eq!(wrap("aaa bbb ccc", Some(9), "", ""), ["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", Some(4), "", ""), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("x abcdefgh", Some(4), "", ""), ["x", "abcd", "efgh"]);
        assert_eq!(wrap("one two", None, "  ", "    "), ["  one two"]);
        assert_eq!(wrap("", Some(10), "", ""), [""]);
    }

    #[test]
    fn the_table_drops_columns_to_fit_and_wraps_the_reasons() {
        let doc = status_doc();
        let wide = table(&doc, "HEADER", Some(200), false);
        assert!(wide.contains("PROFILE") && wide.contains("blackhole: shallow_health_path"), "{wide}");
        for width in [100, 80, 60, 50] {
            let header = "parallax demo — dashboard http://127.0.0.1:9464/ — up 1s — Ctrl-C to stop";
            let narrow = table(&doc, header, Some(width), true);
            let mut pieces = narrow.split("\x1b[");
            let mut plain = pieces.next().unwrap_or_default().to_owned();
            pieces.for_each(|p| plain.push_str(p.split_once('m').map_or(p, |(_, t)| t)));
            for line in plain.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}\n{plain}");
            }
            assert!(plain.contains("http://127.0.0.1:9464/"), "{plain}");
            if width >= 80 {
                assert!(!plain.contains('…'), "wrapped, not cut, at {width}:\n{plain}");
            }
            // The reason is all there, in words.
            let why: Vec<&str> = plain.split("Why:").nth(1).unwrap_or_default().split_whitespace().collect();
            assert_eq!(
                why.join(" "),
                "shallow-health/alb: shallow_health_path — client got 503 while the checker passes with \
                 path /healthz [flipped: path]",
                "{width}"
            );
        }
        let eighty = table(&doc, "HEADER", Some(80), false);
        assert!(!eighty.contains("PROFILE"), "{eighty}");
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
            timings: Timings { total: Duration::from_micros(1300), ..Timings::default() },
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
            target_id: "shallow-health".into(),
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
                id: "shallow-health".to_owned(),
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
            lines[4].starts_with("shallow-health  client  -        unhealthy  http_status 503 · 1.3ms"),
            "{plain}"
        );
        assert!(lines[5].starts_with("                alb     aws-alb  healthy    no probe yet"), "{plain}");
        assert!(lines[5].ends_with("blackhole: shallow_health_path"), "{plain}");
        assert_eq!(lines[7], "Why:");
        assert_eq!(
            lines[8],
            "  shallow-health/alb: shallow_health_path — client got 503 while the checker passes with path \
             /healthz [flipped: path]"
        );
        assert!(!plain.contains('\x1b'));

        let colored = table(&doc, "HEADER", Some(100), true);
        assert!(
            colored.contains("\x1b[31munhealthy\x1b[0m") && colored.contains("\x1b[32mhealthy"),
            "{colored}"
        );
    }

    #[test]
    fn a_short_terminal_folds_the_views_that_pass_and_agree() {
        let mut doc = status_doc();
        let mut healthy = doc.targets[0].clone();
        healthy.name = "healthy".to_owned();
        healthy.mismatches.clear();
        for v in &mut healthy.views {
            v.verdict.state = "healthy";
        }
        doc.targets.insert(0, healthy);
        let whole = table(&doc, "HEADER", Some(100), false);
        assert_eq!(fitted(&doc, "HEADER", Some(100), None, false), whole);
        assert_eq!(fitted(&doc, "HEADER", Some(100), Some(50), false), whole, "room enough");
        let folded = fitted(&doc, "HEADER", Some(100), Some(10), false);
        let lines: Vec<&str> = folded.lines().collect();
        assert_eq!(lines[1], "2 targets, 4 views, 1 open mismatch; views that pass and agree folded");
        assert_eq!(lines[4], "healthy         2 views           healthy", "{folded}");
        assert!(lines[5].starts_with("shallow-health  client"), "{folded}");
        assert!(lines[6].trim_start().starts_with("alb"), "the checker in the mismatch stays:\n{folded}");
        assert_eq!(lines[7], "", "{folded}");
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
