//! Reloads: the reloader task, the fingerprint it watches the configuration with, and the pure
//! plan diff that decides what of the running plan a new one keeps.
//!
//! The diff ([`plan_changes`]) compares names and recipes only: no telemetry, no I/O. The engine
//! applies its result, and makes the telemetry calls that go with it (a removed view's series
//! dropped, an ended pair's mismatch resolved).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval};

use crate::config::{self, ConfigError, ConfigErrors, Env, Plan, Target, View};

use super::discover::Generated;
use super::runtime::Shared;
use super::Options;

/// Compiles the directory on request and when its files, the files its `${file:..}`
/// substitutions read or its `ca_file`s change (a rotated token or CA bundle, a Secret volume's
/// `..data` swap); swaps good plans in, and has the prober read its `ca_file`s again.
///
/// With Kubernetes discovery, `generated` carries the derived targets: each new set is compiled
/// with the directory, and a derived target that does not compile is dropped (and reported)
/// rather than failing the reload.
pub(super) async fn reloader(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<()>,
    options: Options,
    mut read_files: Vec<PathBuf>,
    mut generated: Option<watch::Receiver<Generated>>,
) {
    let mut stop = shared.stop.subscribe();
    let Some(dir) = options.config_dir else {
        return refuse_reloads(stop, requests).await;
    };
    // Out of descriptors at start: every later listing then counts as a change, once.
    let mut seen = fingerprint_blocking(&dir, &read_files).await.unwrap_or_default();
    let mut starved = false;
    let mut poll = options.watch_interval.map(|every| {
        let mut poll = tokio::time::interval_at(Instant::now() + every, every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll
    });
    loop {
        let forced = match next_check(&mut stop, &mut requests, poll.as_mut(), generated.as_mut()).await {
            Check::Requested => true,
            Check::Polled => false,
            Check::Stop => return,
        };
        // Read before compiling: a change made while compiling triggers one more reload.
        let changed = match fingerprint_blocking(&dir, &read_files).await {
            Some(now_seen) => {
                if std::mem::take(&mut starved) {
                    tracing::info!(dir = %dir.display(), "the configuration directory can be listed again");
                }
                let changed = now_seen != seen;
                seen = now_seen;
                changed
            }
            // Out of file descriptors: the listing says nothing of a change. A poll waits for
            // the next one (telling it once); a request goes on and the reload reports why.
            None => {
                if !starved {
                    tracing::warn!(
                        dir = %dir.display(),
                        "cannot list the configuration directory: out of file descriptors; the plan in \
                         use is kept and changes are picked up once descriptors are free"
                    );
                    starved = true;
                }
                false
            }
        };
        if !forced && !changed {
            continue;
        }
        if !forced {
            tracing::info!(dir = %dir.display(), "configuration changed: reloading");
        }
        let files = generated.as_mut().map(|g| g.borrow_and_update().clone()).unwrap_or_default();
        let (loaded, named) = compile(&dir, &options.env, files, &shared).await;
        // The files named, even by a configuration that failed (a token file not there yet
        // makes the reload fail; its arrival must bring the next one). A changed list is
        // fingerprinted anew at the next poll: at most one extra reload, which keeps every
        // unchanged view's state.
        if let Some(named) = named {
            read_files = named;
        }
        if !install(&shared, loaded, Instant::now()).await {
            // The scheduler has stopped: shutting down.
            return;
        }
    }
}

/// What woke the reloader.
enum Check {
    /// SIGHUP, [`Handle::reload`](super::Handle::reload) or new derived targets: reload
    /// whatever the fingerprint.
    Requested,
    /// The watch interval: reload if the fingerprint changed.
    Polled,
    /// Shutting down.
    Stop,
}

/// Waits for a reload request, the next poll (never, without `poll`) or the stop.
async fn next_check(
    stop: &mut watch::Receiver<bool>,
    requests: &mut mpsc::Receiver<()>,
    poll: Option<&mut Interval>,
    generated: Option<&mut watch::Receiver<Generated>>,
) -> Check {
    let derived = async {
        match generated {
            Some(generated) => match generated.changed().await {
                Ok(()) => Check::Requested,
                // Discovery ended (the daemon is stopping): nothing more will come from it.
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    let polled = async {
        match poll {
            Some(poll) => {
                poll.tick().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop.wait_for(|s| *s) => Check::Stop,
        request = requests.recv() => match request {
            Some(()) => Check::Requested,
            None => Check::Stop,
        },
        () = polled => Check::Polled,
        check = derived => check,
    }
}

/// A daemon built from a plan, not a directory, has nothing to reload from: requests are
/// answered with a warning until the stop.
async fn refuse_reloads(mut stop: watch::Receiver<bool>, mut requests: mpsc::Receiver<()>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            request = requests.recv() => match request {
                Some(()) => tracing::warn!("reload requested, but the plan was not loaded from a directory"),
                None => return,
            },
        }
    }
}

/// Compiles `dir` with the derived `generated` files off the runtime's threads. Returns the plan
/// or every error, and the files the configuration named (`None` when the compiler did not
/// finish: the list stays as it was). Derived files with errors are dropped and the rest
/// compiled again; discovery's status is told which.
async fn compile(
    dir: &Path,
    env: &Arc<dyn Env + Send + Sync>,
    generated: Generated,
    shared: &Shared,
) -> (Result<Plan, ConfigErrors>, Option<Vec<PathBuf>>) {
    let (load_dir, env) = (dir.to_path_buf(), env.clone());
    let compiled = tokio::task::spawn_blocking(move || compile_isolating(&load_dir, &*env, &generated)).await;
    match compiled {
        Ok((result, named, accepted, rejected)) => {
            if let Some(discovery) = &shared.discovery {
                discovery.compiled(accepted, rejected);
                shared.telemetry.discovery(&discovery.report());
            }
            (result, Some(named))
        }
        Err(e) => {
            let errors = ConfigErrors(vec![ConfigError {
                file: Some(dir.to_path_buf()),
                key: String::new(),
                message: format!("compiling the configuration failed: {e}"),
            }]);
            (Err(errors), None)
        }
    }
}

/// [`config::load_watched_with`], dropping the derived files that have errors: the plan (or the
/// directory's errors), the files named, how many derived files compiled and the errors of the
/// others.
fn compile_isolating(
    dir: &Path,
    env: &dyn Env,
    generated: &[(PathBuf, String)],
) -> (Result<Plan, ConfigErrors>, Vec<PathBuf>, usize, Vec<String>) {
    // The conditions' file is no target.
    let targets = |files: &[(PathBuf, String)]| {
        files
            .iter()
            .filter(|(p, _)| !p.ends_with(crate::discovery::kubernetes::render::CONDITIONS_FILE))
            .count()
    };
    let (result, named) = config::load_watched_with(dir, env, generated);
    let Err(errors) = &result else { return (result, named, targets(generated), Vec::new()) };
    let is_generated =
        |file: &Option<PathBuf>| file.as_ref().is_some_and(|f| generated.iter().any(|(p, _)| p == f));
    let rejected: Vec<String> =
        errors.0.iter().filter(|e| is_generated(&e.file)).map(ToString::to_string).collect();
    if rejected.is_empty() {
        return (result, named, targets(generated), rejected);
    }
    let bad: HashSet<&PathBuf> = errors.0.iter().filter_map(|e| e.file.as_ref()).collect();
    let kept: Vec<(PathBuf, String)> = generated.iter().filter(|(p, _)| !bad.contains(p)).cloned().collect();
    for error in &rejected {
        tracing::warn!("discovery: derived target dropped: {error}");
    }
    let (result, named) = config::load_watched_with(dir, env, &kept);
    (result, named, targets(&kept), rejected)
}

/// Swaps a compiled plan in (the prober reads its `ca_file`s again), or records why the reload
/// failed. Returns false when the scheduler has stopped.
async fn install(shared: &Arc<Shared>, loaded: Result<Plan, ConfigErrors>, now: Instant) -> bool {
    match loaded {
        Ok(plan) => {
            if let Some(prober) = &shared.prober {
                prober.forget_tls();
            }
            let discovery_changed = match &shared.discovery {
                Some(running) => running.differs(plan.discovery.as_ref()),
                None => plan.discovery.is_some(),
            };
            if discovery_changed {
                tracing::warn!(
                    "[discovery.kubernetes] changed: the new settings take effect at restart; discovery goes on as it started"
                );
            }
            shared.swap(plan, now).await
        }
        Err(errors) => {
            shared.engine().reload_failed(&errors, &*shared.telemetry);
            true
        }
    }
}

/// What a change of the configuration looks like from outside: every configuration file's,
/// `${file:..}` file's and `ca_file`'s path, size, mtime and inode (metadata follows symlinks,
/// so a ConfigMap's or Secret's `..data` swap changes the inode even when sizes and mtimes are
/// equal).
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>, u64)>;

/// The fingerprint, or `None` when the directory cannot be listed for lack of descriptors.
async fn fingerprint_blocking(dir: &Path, read_files: &[PathBuf]) -> Option<Fingerprint> {
    let (dir, read_files) = (dir.to_path_buf(), read_files.to_vec());
    tokio::task::spawn_blocking(move || fingerprint(&dir, &read_files)).await.unwrap_or_default()
}

fn fingerprint(dir: &Path, read_files: &[PathBuf]) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    // Out of file descriptors (issue 18, finding 9): an empty listing would look like every
    // file removed, and the poller reloaded, and failed, each time descriptors ran out.
    if let Err(e) = std::fs::read_dir(dir) {
        if crate::probe::outcome::resource_exhausted(&e) {
            return None;
        }
    }
    // An unreadable or empty directory is a fingerprint too: the reload reports why; so is a
    // named file that is missing (its arrival changes the fingerprint).
    let listed = config::files(dir)
        .unwrap_or_default()
        .into_iter()
        .chain(read_files.iter().cloned())
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let (len, modified, ino) = meta.map_or((0, None, 0), |m| (m.len(), m.modified().ok(), m.ino()));
            (path, len, modified, ino)
        })
        .collect();
    Some(listed)
}

/// A target as the plan diff compares it: its name and its views, the client first, then the
/// checkers in configuration order (the order of the engine's view states and of
/// [`TargetChanges`]' indices).
#[derive(Debug)]
pub(super) struct Lineup<'a> {
    pub(super) name: &'a str,
    pub(super) views: Vec<&'a View>,
}

impl<'a> Lineup<'a> {
    /// The lineup of a compiled target.
    pub(super) fn of(target: &'a Target) -> Lineup<'a> {
        Lineup { name: &target.name, views: target.views().collect() }
    }
}

/// What a new plan keeps of the running one, by position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct PlanChanges {
    /// For each target of the new plan, in order: the old target of the same name and what of
    /// it carries over (`None`: a new target).
    pub(super) targets: Vec<Option<(usize, TargetChanges)>>,
    /// Old targets not in the new plan, in their old order: their mismatches end, their views'
    /// series go.
    pub(super) removed: Vec<usize>,
}

/// What a target of the new plan keeps of the same target in the old one. Views are indexed as
/// in [`Lineup::views`] (0 is the client), pairs by checker (pair `k` is view `k + 1`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct TargetChanges {
    /// For each new view: the old view whose state it keeps (same role and name, same recipe).
    /// `None`: a new view, or one whose recipe changed, starts fresh.
    pub(super) views: Vec<Option<usize>>,
    /// Old checkers no longer in the target: their series go. A view whose recipe changed
    /// keeps its series (the labels are the same); the client never leaves.
    pub(super) removed_views: Vec<usize>,
    /// For each new checker: the old pair that carries on (its open mismatch and attribution
    /// budget), when both its client and its checker kept their state.
    pub(super) pairs: Vec<Option<usize>>,
    /// Old pairs that end, in the order their open mismatches close: those of checkers still
    /// in the target (in the new order), then those of checkers that left (in the old order).
    pub(super) ended_pairs: Vec<usize>,
}

impl TargetChanges {
    /// Whether new view `i` keeps its state.
    pub(super) fn keeps_view(&self, i: usize) -> bool {
        self.views.get(i).is_some_and(Option::is_some)
    }
}

/// The plan diff: targets match by name, views by role and name; a view keeps its state only
/// when its recipe is unchanged, and a pair only when both its views do.
pub(super) fn plan_changes(old: &[Lineup<'_>], new: &[Lineup<'_>]) -> PlanChanges {
    // By name: a plan may hold tens of thousands of targets.
    let old_index: HashMap<&str, usize> = old.iter().enumerate().map(|(i, o)| (o.name, i)).collect();
    let new_names: HashSet<&str> = new.iter().map(|n| n.name).collect();
    let targets = new
        .iter()
        .map(|n| {
            let i = *old_index.get(n.name)?;
            Some((i, target_changes(&old[i].views, &n.views)))
        })
        .collect();
    let removed = (0..old.len()).filter(|&i| !new_names.contains(old[i].name)).collect();
    PlanChanges { targets, removed }
}

/// What `new` (a target's views, client first) keeps of `old` (the same target's views before).
pub(super) fn target_changes(old: &[&View], new: &[&View]) -> TargetChanges {
    // For each new view, the old view of the same role and name.
    let same_name: Vec<Option<usize>> = new
        .iter()
        .enumerate()
        .map(|(i, view)| match i {
            0 => (!old.is_empty()).then_some(0),
            _ => (1..old.len()).find(|&j| old[j].name == view.name),
        })
        .collect();
    let views: Vec<Option<usize>> =
        same_name.iter().zip(new).map(|(same, view)| same.filter(|&j| *old[j] == **view)).collect();
    let removed_views: Vec<usize> =
        (1..old.len()).filter(|&j| !new.iter().skip(1).any(|v| v.name == old[j].name)).collect();
    let client_kept = views.first().is_some_and(Option::is_some);
    let mut pairs = Vec::with_capacity(new.len().saturating_sub(1));
    let mut ended_pairs = Vec::new();
    for (same, kept) in same_name.iter().zip(&views).skip(1) {
        match same.map(|j| j - 1) {
            Some(k) if client_kept && kept.is_some() => pairs.push(Some(k)),
            Some(k) => {
                ended_pairs.push(k);
                pairs.push(None);
            }
            None => pairs.push(None),
        }
    }
    ended_pairs.extend(removed_views.iter().map(|j| j - 1));
    TargetChanges { views, removed_views, pairs, ended_pairs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{target, view, view_url};

    /// Set in the child process of [`fd_exhaustion_is_no_change_of_the_configuration`].
    const FD_CHILD: &str = "PARALLAX_TEST_RELOAD_FD_CHILD";

    /// Issue 18, finding 9: under `ulimit -n 128` the config poller "reloaded" 5 times with no
    /// change and logged 8 failures: listing the directory failed with EMFILE, the empty listing
    /// looked like every file removed, and the next listing like every file back. Out of
    /// descriptors, the fingerprint is unknown (no change); with descriptors back it is the
    /// same as before. Runs in a child whose soft limit is lowered, as the probe's test does.
    #[test]
    fn fd_exhaustion_is_no_change_of_the_configuration() {
        if std::env::var_os(FD_CHILD).is_some() {
            return fd_exhaustion_child();
        }
        let exe = std::env::current_exe().expect("the test binary");
        let name = "daemon::reload::tests::fd_exhaustion_is_no_change_of_the_configuration";
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -S -n 64 && exec \"$0\" \"$@\"")
            .arg(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(FD_CHILD, "1")
            .output()
            .expect("the child runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "the child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the child ran the test:\n{stdout}");
        assert!(stdout.contains("fds exhausted at"), "the child exhausted its fds:\n{stdout}");
    }

    fn fd_exhaustion_child() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00-daemon.toml"), "[defaults]\n").unwrap();
        std::fs::write(dir.path().join("10-shop.toml"), "[[target]]\nname = \"shop\"\n").unwrap();
        let before = fingerprint(dir.path(), &[]).expect("listed");
        assert_eq!(before.len(), 2, "{before:?}");
        let mut held = Vec::new();
        let exhausted = loop {
            assert!(held.len() < 4096, "no EMFILE after {} files: the limit was not lowered", held.len());
            match std::fs::File::open("/dev/null") {
                Ok(f) => held.push(f),
                Err(e) => break e,
            }
        };
        assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE), "{exhausted}");
        println!("fds exhausted at {} files held", held.len());
        assert_eq!(fingerprint(dir.path(), &[]), None, "unknown, not an empty directory");
        drop(held);
        assert_eq!(fingerprint(dir.path(), &[]), Some(before), "the same configuration");
    }

    /// A derived target that does not compile is dropped and reported; the directory's targets
    /// and the other derived ones run.
    #[test]
    fn a_derived_target_with_an_error_is_dropped_and_the_rest_compiled() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let hand = "[[target]]\nname = \"hand\"\n[target.client]\nurl = \"http://127.0.0.1:1/\"\n";
        std::fs::write(dir.path().join("10-hand.toml"), hand).unwrap_or_else(|e| panic!("{e}"));
        let derived = |name: &str, timeout: &str| {
            let text = format!(
                "[[target]]\nname = \"{name}\"\n[target.client]\nurl = \"http://127.0.0.1:2/\"\ntimeout = \"{timeout}\"\n"
            );
            (PathBuf::from(format!("kubernetes/{name}.toml")), text)
        };
        let env = HashMap::new();
        let generated = vec![derived("svc.a", "1s"), derived("svc.bad", "ten"), derived("svc.c", "1s")];
        let (result, _, accepted, rejected) = compile_isolating(dir.path(), &env, &generated);
        let plan = result.unwrap_or_else(|e| panic!("the rest compiles: {e}"));
        let names: Vec<&str> = plan.targets.iter().map(|t| &*t.name).collect();
        assert_eq!(names, ["hand", "svc.a", "svc.c"]);
        assert_eq!(accepted, 2);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(
            rejected[0].starts_with("kubernetes/svc.bad.toml: target[svc.bad].client.timeout"),
            "{rejected:?}"
        );

        // An error of the directory's own fails the reload as before, derived targets or not.
        std::fs::write(dir.path().join("20-broken.toml"), "bogus = 1\n").unwrap_or_else(|e| panic!("{e}"));
        let (result, _, _, rejected) = compile_isolating(dir.path(), &env, &generated);
        assert!(result.is_err() && rejected.len() == 1, "{rejected:?}");
    }

    /// Issue 18, finding 1: the alias bomb dropped in the directory of a running daemon drove
    /// the reload to 3.7 GB. The reload's compile refuses it (the engine then keeps its plan,
    /// `a_failed_reload_keeps_the_plan_and_readiness`).
    #[test]
    fn yaml_alias_bomb_added_on_reload_fails_the_reload() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let hand = "[[target]]\nname = \"hand\"\n[target.client]\nurl = \"http://127.0.0.1:1/\"\n";
        std::fs::write(dir.path().join("10-hand.toml"), hand).unwrap_or_else(|e| panic!("{e}"));
        let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            bomb += &format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 9].join(","));
        }
        std::fs::write(dir.path().join("20-bomb.yaml"), bomb).unwrap_or_else(|e| panic!("{e}"));
        let (result, _, _, _) = compile_isolating(dir.path(), &HashMap::new(), &[]);
        let errors = result.err().unwrap_or_else(|| panic!("the reload fails"));
        assert!(
            errors.to_string().contains("20-bomb.yaml: too large once its YAML aliases are expanded"),
            "{errors}"
        );
    }

    fn changed(mut v: View) -> View {
        v.path = "/other".into();
        v
    }

    #[test]
    fn an_unchanged_target_keeps_every_view_and_pair() {
        let (client, a, b) = (view("shop", "client"), view("shop", "a"), view("shop", "b"));
        let changes = target_changes(&[&client, &a, &b], &[&client, &a, &b]);
        assert_eq!(
            changes,
            TargetChanges {
                views: vec![Some(0), Some(1), Some(2)],
                removed_views: vec![],
                pairs: vec![Some(0), Some(1)],
                ended_pairs: vec![],
            }
        );
    }

    #[test]
    fn views_match_by_name_whatever_their_order_and_added_ones_start_fresh() {
        let (client, a, b, c) =
            (view("shop", "client"), view("shop", "a"), view("shop", "b"), view("shop", "c"));
        let changes = target_changes(&[&client, &a, &b], &[&client, &c, &b, &a]);
        assert_eq!(changes.views, [Some(0), None, Some(2), Some(1)]);
        assert_eq!(changes.pairs, [None, Some(1), Some(0)]);
        assert!(changes.removed_views.is_empty() && changes.ended_pairs.is_empty());
    }

    #[test]
    fn a_changed_checker_starts_fresh_keeps_its_series_and_ends_its_pair() {
        let (client, a, b) = (view("shop", "client"), view("shop", "a"), view("shop", "b"));
        let b2 = changed(b.clone());
        let changes = target_changes(&[&client, &a, &b], &[&client, &a, &b2]);
        assert_eq!(changes.views, [Some(0), Some(1), None]);
        assert!(changes.removed_views.is_empty(), "same labels: the series stay");
        assert_eq!(changes.pairs, [Some(0), None]);
        assert_eq!(changes.ended_pairs, [1]);
        assert!(!changes.keeps_view(2));
    }

    #[test]
    fn a_changed_client_ends_every_pair_but_the_checkers_keep_their_state() {
        let (client, a, b) = (view("shop", "client"), view("shop", "a"), view("shop", "b"));
        let client2 = changed(client.clone());
        let changes = target_changes(&[&client, &a, &b], &[&client2, &a, &b]);
        assert_eq!(changes.views, [None, Some(1), Some(2)]);
        assert_eq!(changes.pairs, [None, None]);
        assert_eq!(changes.ended_pairs, [0, 1]);
    }

    #[test]
    fn checkers_that_left_lose_their_series_and_their_pairs_end_after_the_changed_ones() {
        let (client, a, b, c) =
            (view("shop", "client"), view("shop", "a"), view("shop", "b"), view("shop", "c"));
        let c2 = changed(c.clone());
        let changes = target_changes(&[&client, &a, &b, &c], &[&client, &c2]);
        assert_eq!(changes.views, [Some(0), None]);
        assert_eq!(changes.removed_views, [1, 2]);
        assert_eq!(changes.pairs, [None]);
        assert_eq!(changes.ended_pairs, [2, 0, 1], "the changed checker's first, then those that left");
    }

    #[test]
    fn targets_match_by_name_and_the_rest_are_added_or_removed() {
        let shop = target(view("shop", "client"), vec![view("shop", "nlb"), view("shop", "gone")]);
        let old = target(view_url("old", "client", "https://old.example.com/"), vec![]);
        let fresh = target(view_url("fresh", "client", "https://fresh.example.com/"), vec![]);
        let mut shop2 = shop.clone();
        shop2.checkers.truncate(1);
        let before = [Lineup::of(&old), Lineup::of(&shop)];
        let after = [Lineup::of(&shop2), Lineup::of(&fresh)];
        let changes = plan_changes(&before, &after);
        assert_eq!(changes.removed, [0]);
        let [Some((1, kept)), None] = &changes.targets[..] else { panic!("{changes:?}") };
        assert_eq!(kept.views, [Some(0), Some(1)]);
        assert_eq!(kept.removed_views, [2]);
        assert_eq!(kept.ended_pairs, [1]);
    }

    #[test]
    fn the_first_plan_adds_everything() {
        let shop = target(view("shop", "client"), vec![view("shop", "nlb")]);
        let changes = plan_changes(&[], &[Lineup::of(&shop)]);
        assert_eq!(changes, PlanChanges { targets: vec![None], removed: vec![] });
    }
}
