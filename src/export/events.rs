//! JSON event lines (docs/exports.md): one line per verdict change and per mismatch opened or resolved,
//! on stdout by default.
//!
//! Probing never waits for the writer: lines go through a bounded channel to a writer thread
//! (a thread, not a task, because a blocked stdout pipe blocks the writing thread and must not
//! take a tokio worker with it). A line that does not fit is dropped and counted.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::{ProfileName, Role};
use crate::diff::Mismatch;
use crate::probe::timestamp::rfc3339;
use crate::probe::ErrorCode;
use crate::verdict::VerdictChange;

use super::metrics::{DropReason, Metrics};
use super::{hex, MismatchEvent, ProbeReport, SpanRef};

/// A verdict change line.
#[derive(Debug, Serialize)]
pub(crate) struct VerdictChangeLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When the deciding probe finished, RFC 3339.
    at: String,
    target: &'a str,
    view: &'a str,
    role: Role,
    profile: Option<ProfileName>,
    /// `null` when the verdict was not known before.
    from: Option<&'static str>,
    to: &'static str,
    /// How long the previous verdict held, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    held_s: Option<f64>,
    streak: u32,
    /// The deciding probe.
    ok: bool,
    error: Option<ErrorCode>,
    status: Option<u16>,
    /// The exported span of the deciding probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<String>,
}

impl<'a> VerdictChangeLine<'a> {
    /// The line of `report`, which decided `change` (its [`ProbeReport::change`]); `at` is when
    /// the probe finished.
    pub(crate) fn new(
        report: &ProbeReport<'a>,
        change: &VerdictChange,
        span: Option<SpanRef>,
    ) -> VerdictChangeLine<'a> {
        let ProbeReport { view, outcome, started, .. } = *report;
        VerdictChangeLine {
            kind: "verdict_change",
            at: rfc3339(started + outcome.timings.total),
            target: &view.target,
            view: &view.name,
            role: view.role,
            profile: view.profile,
            from: change.from.map(|h| h.as_str()),
            to: change.to.as_str(),
            held_s: change.held.map(|d| d.as_secs_f64()),
            streak: change.streak,
            ok: outcome.ok,
            error: outcome.error,
            status: outcome.status,
            trace_id: span.map(|s| hex(&s.trace_id)),
            span_id: span.map(|s| hex(&s.span_id)),
        }
    }
}

/// A mismatch opened/resolved line: the `mismatch` record of `parallax probe --format json` plus the event's own fields.
#[derive(Debug, Serialize)]
pub(crate) struct MismatchLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When the event happened, RFC 3339.
    at: String,
    /// Opened: when the views started to disagree.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// Resolved: when it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    opened_at: Option<String>,
    /// Resolved: how long it was open, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    open_for_s: Option<f64>,
    /// Resolved: `agreed`, `both_unhealthy` or `removed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'static str>,
    #[serde(flatten)]
    mismatch: &'a Mismatch,
    /// The exported `parallax.mismatch` span.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<String>,
}

impl<'a> MismatchLine<'a> {
    /// The line of `event`, happening at `now`, with its exported `parallax.mismatch` span.
    pub(crate) fn new(event: &MismatchEvent<'a>, now: SystemTime, span: Option<SpanRef>) -> MismatchLine<'a> {
        let line = MismatchLine {
            kind: "mismatch_opened",
            at: rfc3339(now),
            since: None,
            opened_at: None,
            open_for_s: None,
            resolution: None,
            mismatch: event.mismatch(),
            trace_id: span.map(|s| s.trace_id_hex()),
            span_id: span.map(|s| s.span_id_hex()),
        };
        match event {
            MismatchEvent::Opened { since, .. } => MismatchLine { since: Some(rfc3339(*since)), ..line },
            MismatchEvent::Resolved { opened_at, open_for, resolution, .. } => MismatchLine {
                kind: "mismatch_resolved",
                opened_at: Some(rfc3339(*opened_at)),
                open_for_s: Some(open_for.as_secs_f64()),
                resolution: Some(resolution),
                ..line
            },
        }
    }
}

enum Message {
    Line(String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The bounded queue and its writer thread.
pub(crate) struct EventWriter {
    // The thread ends when this sender (the last one) is dropped: no handle needed.
    tx: SyncSender<Message>,
    /// `[vantage] name`, on every line.
    vantage: Option<String>,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").finish_non_exhaustive()
    }
}

impl EventWriter {
    /// Starts the writer thread on `sink` with room for `capacity` lines.
    pub(crate) fn start(
        sink: Box<dyn Write + Send>,
        capacity: usize,
        vantage: Option<String>,
    ) -> EventWriter {
        let (tx, rx) = sync_channel(capacity.max(1));
        if let Err(e) = std::thread::Builder::new()
            .name("parallax-events".to_owned())
            .spawn(move || write_lines(sink, rx))
        {
            // Without the thread the queue fills up and every line is counted as dropped.
            tracing::error!("cannot start the event writer thread, events are off: {e}");
        }
        EventWriter { tx, vantage }
    }

    /// Queues one event as a JSON line; drops and counts it when the queue is full.
    pub(crate) fn emit(&self, event: &impl Serialize, metrics: &Metrics) {
        /// The event's fields, then `vantage`.
        #[derive(Serialize)]
        struct Line<'e, E: Serialize> {
            #[serde(flatten)]
            event: &'e E,
            #[serde(skip_serializing_if = "Option::is_none")]
            vantage: Option<&'e str>,
        }
        let line = match serde_json::to_string(&Line { event, vantage: self.vantage.as_deref() }) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!("cannot serialize an event: {e}");
                metrics.dropped("events", DropReason::Rejected, 1);
                return;
            }
        };
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics.dropped("events", DropReason::QueueFull, 1)
            }
        }
    }

    /// Waits until every queued line is written and flushed, at most `deadline`.
    pub(crate) async fn flush(&self, deadline: Duration) -> bool {
        let (done, wait) = tokio::sync::oneshot::channel();
        let all = async {
            // Polled, not a blocking `send`: a writer stuck on a blocked stdout must not hold a
            // thread past the deadline (nor hold up the runtime's exit).
            let mut message = Message::Flush(done);
            loop {
                match self.tx.try_send(message) {
                    Ok(()) => break,
                    Err(TrySendError::Full(m)) => message = m,
                    Err(TrySendError::Disconnected(_)) => return false,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            wait.await.is_ok()
        };
        tokio::time::timeout(deadline, all).await.unwrap_or(false)
    }
}

fn write_lines(mut sink: Box<dyn Write + Send>, rx: Receiver<Message>) {
    let mut broken = false;
    while let Ok(message) = rx.recv() {
        match message {
            Message::Line(line) if !broken => {
                // Flushed per line: consumers tail stdout and want each event as it happens.
                let written = sink
                    .write_all(line.as_bytes())
                    .and_then(|()| sink.write_all(b"\n"))
                    .and_then(|()| sink.flush());
                if let Err(e) = written {
                    // A closed stdout (EPIPE) stays closed: stop writing, keep draining so
                    // senders never block.
                    tracing::warn!("event output failed, events are off from now on: {e}");
                    broken = true;
                }
            }
            Message::Line(_) => {}
            Message::Flush(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
}
