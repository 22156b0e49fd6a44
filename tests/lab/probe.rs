//! Running `parallax probe --format json` in the lab, and reading what it printed.

use serde_json::Value;

/// The `[defaults]` of every lab probes.d: checks time out after 1 s (dropped SYNs must not make
/// a test slow), and attribution may probe every hybrid of a pair (both directions of up to 12
/// differing attributes), so a diagnosis never depends on the hybrid cap.
pub const LAB_DEFAULTS: &str = "[defaults]\ninterval = \"2s\"\ntimeout = \"1s\"\nmax_hybrids = 24\n";

/// What one `parallax probe` run printed and returned.
#[derive(Debug, Clone)]
pub struct Report {
    /// Exit code.
    pub exit: i32,
    /// `outcome` records in order.
    pub outcomes: Vec<Value>,
    /// `mismatch` records in order.
    pub mismatches: Vec<Value>,
    /// The `summary` record.
    pub summary: Value,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
    /// The scenario's probes.d (for failure messages).
    pub config: String,
}

impl Report {
    /// Parses the JSON lines; panics with the whole output when they are not the JSON contract's.
    pub fn parse(exit: i32, stdout: String, stderr: String, config: &str) -> Report {
        let mut report = Report {
            exit,
            outcomes: Vec::new(),
            mismatches: Vec::new(),
            summary: Value::Null,
            stdout: String::new(),
            stderr,
            config: config.to_owned(),
        };
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("parallax printed a line that is not JSON ({e}): {line}\n{}", report.context())
            });
            match value["type"].as_str() {
                Some("outcome") => report.outcomes.push(value),
                Some("mismatch") => report.mismatches.push(value),
                Some("summary") => report.summary = value,
                _ => panic!("unknown record {line}\n{}", report.context()),
            }
        }
        report.stdout = stdout;
        assert!(
            exit == 0 || exit == 1,
            "parallax probe exited {exit} (2 is a configuration or usage error)\n{}",
            report.context()
        );
        assert!(report.summary.is_object(), "no summary record\n{}", report.context());
        report
    }

    /// The configuration and the output, for failure messages.
    pub fn context(&self) -> String {
        format!("--- probes.d:\n{}\n--- stdout:\n{}\n--- stderr:\n{}", self.config, self.stdout, self.stderr)
    }

    /// The only outcome of `target`/`view`.
    pub fn outcome(&self, target: &str, view: &str) -> &Value {
        let found: Vec<&Value> =
            self.outcomes.iter().filter(|o| o["target"] == target && o["view"] == view).collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!("expected one outcome of {target}/{view}, found {}\n{}", found.len(), self.context()),
        }
    }

    /// The only mismatch found from probes between `target`'s client and its checker `checker`.
    pub fn mismatch(&self, target: &str, checker: &str) -> &Value {
        let found: Vec<&Value> = self
            .mismatches
            .iter()
            .filter(|m| m["target"] == target && m["checker_view"] == checker && m["basis"] == "probes")
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => {
                panic!("expected one mismatch {target}/{checker}, found {}\n{}", found.len(), self.context())
            }
        }
    }

    /// Asserts that `target` has no mismatch found from probes.
    pub fn assert_no_mismatch(&self, target: &str) {
        let found: Vec<&Value> =
            self.mismatches.iter().filter(|m| m["target"] == target && m["basis"] == "probes").collect();
        assert!(found.is_empty(), "expected no mismatch for {target}, found {found:?}\n{}", self.context());
    }

    /// Asserts an outcome: success, or failure with `error` (its docs/errors.md code) and `phase`.
    pub fn assert_outcome(&self, target: &str, view: &str, expected: Expect) {
        let o = self.outcome(target, view);
        let (ok, error, phase) = match expected {
            Expect::Ok => (true, Value::Null, Value::Null),
            Expect::Fail(phase, code) => (false, Value::from(code), Value::from(phase)),
        };
        assert!(
            o["ok"] == ok && o["error"] == error && o["phase"] == phase,
            "{target}/{view}: expected ok={ok} phase={phase} error={error}, got ok={} phase={} error={} status={} \
             detail={}\n{}",
            o["ok"],
            o["phase"],
            o["error"],
            o["status"],
            o["detail"],
            self.context()
        );
    }

    /// Asserts a mismatch's direction and diagnosis, and that `flipped` holds `flipped`
    /// (the attributes whose switch flipped a result); returns the record.
    pub fn assert_mismatch(
        &self,
        target: &str,
        checker: &str,
        direction: &str,
        diagnosis: &str,
        flipped: &[&str],
    ) -> &Value {
        let m = self.mismatch(target, checker);
        let got: Vec<&str> =
            m["flipped"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        assert!(
            m["direction"] == direction && m["diagnosis"] == diagnosis && flipped.iter().all(|f| got.contains(f)),
            "{target}/{checker}: expected {direction} / {diagnosis} with {flipped:?} flipped, got {} / {} with {got:?} \
             flipped; evidence: {}\n{}",
            m["direction"],
            m["diagnosis"],
            m["evidence"],
            self.context()
        );
        m
    }
}

/// An expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Ok,
    /// Failure in this phase with this code.
    Fail(&'static str, &'static str),
}
