//! The process's open-files limit (`RLIMIT_NOFILE`): raised to its hard limit at start, and
//! reported when it stays low.
//!
//! Every probe in flight holds a socket (two with a DNS query), and the admin server, the
//! config reader and the exporters need descriptors of their own. Many systems start services
//! with a soft limit of 1,024 and a much higher hard limit: raising the soft one to the hard one
//! is what a service may always do, and what makes the default cap on probes in flight (sized
//! from this limit) useful.

use std::fmt;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// An unlimited limit, as [`open_files`] gives it.
pub const UNLIMITED: u64 = u64::MAX;

/// Below this soft limit (after raising), start-up warns: a daemon probing hundreds of views
/// at once can run out, and probes would then fail as `local_resource_exhausted`.
pub const LOW_OPEN_FILES: u64 = 4096;

/// What [`raise_open_files`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit ([`UNLIMITED`] for none).
    pub hard: u64,
}

impl OpenFiles {
    /// Whether the limit is low enough to warn about.
    pub fn low(&self) -> bool {
        self.soft < LOW_OPEN_FILES
    }
}

impl fmt::Display for OpenFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: u64| if v == UNLIMITED { "unlimited".to_owned() } else { v.to_string() };
        write!(f, "open-files limit {} (hard {})", n(self.soft), n(self.hard))
    }
}

/// The current soft and hard `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub fn open_files() -> (u64, u64) {
    let lim = getrlimit(Resource::Nofile);
    (lim.current.unwrap_or(UNLIMITED), lim.maximum.unwrap_or(UNLIMITED))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped at the kernel's `nr_open`, which
/// `setrlimit` refuses to pass even when the hard limit is unlimited).
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    let (before, hard) = open_files();
    let target = hard.min(nr_open().unwrap_or(1 << 20));
    if target > before {
        let maximum = (hard != UNLIMITED).then_some(hard);
        setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum })?;
    }
    let (soft, hard) = open_files();
    Ok(OpenFiles { before, soft, hard })
}

/// `/proc/sys/fs/nr_open`: the most any process may have open.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// Raises the limit and logs what was done: INFO when raised, WARN when it stays low (with what
/// to do), WARN when it cannot be read or set.
pub fn raise_and_report() -> Option<OpenFiles> {
    match raise_open_files() {
        Ok(limit) => {
            if limit.soft > limit.before {
                tracing::info!("raised the open-files limit from {} to {}", limit.before, limit.soft);
            }
            if limit.low() {
                tracing::warn!(
                    "{limit} is low: with many probes in flight this host can run out of file descriptors \
                     (probes then fail as local_resource_exhausted); raise it (systemd LimitNOFILE=, \
                     `ulimit -n`, the container runtime's nofile limit) to at least {LOW_OPEN_FILES}"
                );
            }
            Some(limit)
        }
        Err(e) => {
            tracing::warn!("cannot read or raise the open-files limit: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let limit = raise_open_files().unwrap();
        assert!(limit.soft >= limit.before);
        assert!(limit.soft == limit.hard || Some(limit.soft) == nr_open(), "{limit:?}");
        let again = raise_open_files().unwrap();
        assert_eq!((again.before, again.soft), (limit.soft, limit.soft));
    }

    #[test]
    fn low_limits_are_told_apart() {
        let l = |soft| OpenFiles { before: soft, soft, hard: soft };
        assert!(l(1024).low());
        assert!(!l(LOW_OPEN_FILES).low());
        assert_eq!(
            OpenFiles { before: 1, soft: 1024, hard: UNLIMITED }.to_string(),
            "open-files limit 1024 (hard unlimited)"
        );
    }
}
