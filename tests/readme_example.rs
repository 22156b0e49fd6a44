//! README.md's "What it looks like" is real: `examples/readme/run` starts nginx with the
//! README's servers on 127.0.0.11-13, runs `parallax probe` on the README's probes.d, and this
//! test checks that what it prints still holds the mismatches the README shows (target,
//! checker, direction and diagnosis), and that the README shows the example's files as they
//! are.
//!
//! Needs nginx (Debian's `nginx-light`, which scripts/test installs) and openssl; without
//! nginx the test says so and passes without running, as `examples/readme/run` itself exits 3.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README's "What it looks like" section.
fn readme_section() -> String {
    let readme = read(&repo().join("README.md"));
    let start = readme.find("## What it looks like").expect("README has `## What it looks like`");
    let rest = &readme[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The fenced blocks of `text` whose opening fence is "```" + `lang`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Option<(bool, String)> = None;
    for line in text.split_inclusive('\n') {
        match (open.take(), line.trim_end().strip_prefix("```")) {
            (None, Some(opening)) => open = Some((opening == lang, String::new())),
            (None, None) => {}
            (Some((wanted, body)), Some(_)) => {
                if wanted {
                    out.push(body);
                }
            }
            (Some((wanted, mut body)), None) => {
                body.push_str(line);
                open = Some((wanted, body));
            }
        }
    }
    out
}

/// `(target, checker, direction, diagnosis)` of every `MISMATCH` line of `probe`'s table.
fn mismatches(table: &str) -> Vec<(String, String, String, String)> {
    let mut target = String::new();
    let mut out = Vec::new();
    for line in table.lines() {
        if let Some(name) = line.strip_prefix("target ") {
            target = name.trim().to_owned();
        }
        // "  MISMATCH client vs nlb: false_drain / checker_protocol_mismatch (flipped: tls)"
        let Some(rest) = line.trim_start().strip_prefix("MISMATCH client vs ") else { continue };
        let (checker, rest) = rest.split_once(": ").expect("`checker: direction / diagnosis`");
        let (direction, rest) = rest.split_once(" / ").expect("`direction / diagnosis`");
        let diagnosis = rest.split_whitespace().next().unwrap_or_default();
        out.push((target.clone(), checker.to_owned(), direction.to_owned(), diagnosis.to_owned()));
    }
    out
}

fn nginx_installed() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("nginx").is_file()));
    on_path || Path::new("/usr/sbin/nginx").is_file()
}

#[test]
fn the_readme_example_prints_the_mismatches_the_readme_shows() {
    if !nginx_installed() {
        eprintln!(
            "SKIPPED: nginx is not installed (Debian: apt-get install nginx-light; scripts/test \
             installs it): examples/readme/run cannot start the README's servers"
        );
        return;
    }
    let section = readme_section();
    let started = Instant::now();
    let out = Command::new(repo().join("examples/readme/run"))
        .env("PARALLAX", env!("CARGO_BIN_EXE_parallax"))
        .output()
        .expect("examples/readme/run runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(90), "the script is bounded in time");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a client view fails, so exit 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let want = vec![
        ("shop", "nlb", "false_drain", "checker_protocol_mismatch"),
        ("cart-api", "alb", "blackhole", "shallow_health_path"),
    ];
    let want: Vec<(String, String, String, String)> = want
        .into_iter()
        .map(|(t, c, d, g)| (t.to_owned(), c.to_owned(), d.to_owned(), g.to_owned()))
        .collect();
    assert_eq!(mismatches(&stdout), want, "what the example prints:\n{stdout}\nstderr:\n{stderr}");

    // The README's printed table is this output (timings and addresses aside).
    let printed = blocks(&section, "")
        .into_iter()
        .find(|b| b.starts_with("target shop\n"))
        .expect("the README shows probe's table");
    assert_eq!(mismatches(&printed), want, "the README's table:\n{printed}");
    let shape = |table: &str| -> Vec<String> {
        table.lines().map(|l| l.split_whitespace().next().unwrap_or_default().to_owned()).collect()
    };
    assert_eq!(shape(&printed), shape(&stdout), "the README's table has the lines the example prints");
    let last = |table: &str| table.lines().last().unwrap_or_default().to_owned();
    assert_eq!(last(&printed), last(&stdout), "the summary line");

    // And the README shows the example's files as they are.
    let toml = blocks(&section, "toml").into_iter().next().expect("the README's probes.d block");
    let toml = toml.strip_prefix("# probes.d/shop.toml\n").expect("the block names its file");
    assert_eq!(toml, read(&repo().join("examples/readme/probes.d/shop.toml")));
    let nginx = blocks(&section, "nginx").into_iter().next().expect("the README's nginx block");
    assert_eq!(nginx, read(&repo().join("examples/readme/servers.conf")));
}
