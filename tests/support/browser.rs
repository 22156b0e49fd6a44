//! Headless Chromium for the dashboard tests: the DOM a real browser renders from a URL, and
//! helpers to find elements in it.
//!
//! Needs Debian's `chromium` package (`apt-get install -y chromium`), or `PARALLAX_CHROMIUM`
//! naming another Chromium binary; without one the test fails saying so. Tests that need only
//! this file include it by path (`#[path = "support/browser.rs"] mod browser;`) rather than
//! compiling the whole support module.

use std::time::Duration;

use tokio::time::timeout;

/// The DOM Chromium renders from `url` (after 5 s of virtual time: the first fetch and two
/// refreshes).
pub async fn chromium_dom(url: &str) -> String {
    let binary = std::env::var("PARALLAX_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = tempfile::tempdir().expect("tempdir for the browser profile");
    let mut command = tokio::process::Command::new(&binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--window-size=1280,1000",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{binary}` not found: the dashboard test needs headless Chromium. On Debian/Ubuntu run \
             `apt-get install -y chromium`, or set PARALLAX_CHROMIUM to a Chromium binary."
        ),
        Err(e) => panic!("cannot start `{binary}`: {e}"),
    };
    let output = timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("Chromium finishes within 90 s")
        .expect("Chromium's output");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "Chromium failed ({}):\nstdout:\n{dom}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// The element whose start tag holds `marker`, up to the first `close` after it (elements of
/// the same kind are never nested in the dashboard).
pub fn element<'a>(dom: &'a str, marker: &str, close: &str) -> &'a str {
    let at = dom.find(marker).unwrap_or_else(|| panic!("no `{marker}` in the rendered DOM:\n{dom}"));
    let start = dom[..at].rfind('<').expect("a start tag");
    let end = dom[at..]
        .find(close)
        .map(|i| at + i + close.len())
        .unwrap_or_else(|| panic!("`{marker}` is not closed"));
    &dom[start..end]
}

/// The start tag holding `marker`.
pub fn start_tag<'a>(dom: &'a str, marker: &str) -> &'a str {
    element(dom, marker, ">")
}

/// Asserts that `haystack` contains `needle`, naming `what` and showing the haystack if not.
#[track_caller]
pub fn assert_has(haystack: &str, needle: &str, what: &str) {
    assert!(haystack.contains(needle), "{what}: `{needle}` missing from:\n{haystack}");
}
