//! The shipped Prometheus rules: `deploy/prometheus/parallax-rules.yaml` and
//! `deploy/kubernetes/prometheusrule.yaml` are what `parallax rules` prints, they pass
//! `promtool check rules`, and `promtool test rules` (deploy/prometheus/tests/) reproduces each
//! alert firing and not firing — and fails when the rules are generated with other parameters,
//! so the cases do test the parameters. Needs promtool (Debian's `prometheus`, installed by
//! scripts/test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parallax(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parallax")).args(args).output().expect("run the parallax binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn promtool(args: &[&str], dir: &Path) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (Debian package `prometheus`; scripts/test installs it)")
}

#[test]
fn the_shipped_rule_files_are_what_parallax_rules_prints() {
    for (file, args) in [
        ("deploy/prometheus/parallax-rules.yaml", vec!["rules"]),
        ("deploy/kubernetes/prometheusrule.yaml", vec!["rules", "--format", "prometheus-rule"]),
    ] {
        let out = parallax(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shipped = std::fs::read_to_string(repo().join(file)).expect("read the shipped file");
        assert_eq!(
            shipped,
            text(&out.stdout),
            "{file} differs from `parallax {}`: regenerate it with that command",
            args.join(" ")
        );
    }
}

#[test]
fn the_rules_pass_promtool_check_and_the_prometheus_rule_holds_the_same_groups() {
    let dir = repo().join("deploy/prometheus");
    let out = promtool(&["check", "rules", "parallax-rules.yaml"], &dir);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("SUCCESS: 18 rules found"), "{}", text(&out.stdout));

    // The PrometheusRule's spec is a rule file: the same groups, indented under `spec:`.
    let operator =
        std::fs::read_to_string(repo().join("deploy/kubernetes/prometheusrule.yaml")).expect("read");
    let spec = operator.split_once("\nspec:\n").expect("a spec").1;
    let unindented: String =
        spec.lines().map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l))).collect();
    let plain = std::fs::read_to_string(dir.join("parallax-rules.yaml")).expect("read");
    let plain_groups = plain.split_once("\ngroups:\n").expect("groups").1;
    assert_eq!(unindented.split_once("groups:\n").expect("groups").1, plain_groups);
}

#[test]
fn promtool_test_rules_reproduces_every_alert_firing_and_not_firing() {
    let tests = repo().join("deploy/prometheus/tests");
    let out = promtool(&["test", "rules", "parallax-rules.test.yaml"], &tests);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    // Every alert of the file has a case.
    let cases = std::fs::read_to_string(tests.join("parallax-rules.test.yaml")).expect("read");
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/parallax-rules.yaml")).expect("read");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(cases.contains(&format!("alertname: {alert}")), "no promtool case for {alert}");
    }
}

/// The cases are not vacuous: rules generated for 3 failing vantages, a 99% objective or
/// another job make the promtool cases written for the defaults fail, at those alerts.
#[test]
fn promtool_cases_fail_for_rules_generated_with_other_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    let cases = repo().join("deploy/prometheus/tests/parallax-rules.test.yaml");
    std::fs::copy(cases, dir.path().join("tests/parallax-rules.test.yaml")).expect("copy the cases");
    for (flags, alert) in [
        (vec!["--vantages", "3"], "ParallaxClientFailingFromVantages"),
        (vec!["--slo", "99"], "ParallaxErrorBudgetBurn"),
        (vec!["--job", "probes"], "ParallaxVantageAbsent"),
    ] {
        let out = parallax(&[&["rules"][..], &flags].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::write(dir.path().join("parallax-rules.yaml"), &out.stdout).expect("write the rules");
        let run = promtool(&["test", "rules", "parallax-rules.test.yaml"], &dir.path().join("tests"));
        let said = text(&run.stdout) + &text(&run.stderr);
        assert!(!run.status.success(), "{flags:?}: the cases still pass: {said}");
        assert!(said.contains(&format!("alertname: {alert}")), "{flags:?}: {said}");
    }
}

#[test]
fn parallax_rules_refuses_parameters_out_of_range_with_exit_2() {
    for (args, says) in [
        (vec!["rules", "--slo", "100"], "--slo 100 is out of range"),
        (vec!["rules", "--slo", "90"], "above 93.06"),
        (vec!["rules", "--vantages", "0"], "--vantages 0 is out of range"),
        (vec!["rules", "--pending", "soon"], "is not a duration"),
    ] {
        let out = parallax(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?} printed rules");
    }
}
