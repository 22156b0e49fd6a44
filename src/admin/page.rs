//! The dashboard: one HTML page with its stylesheet and script inlined, all compiled into the
//! binary (no CDN, no build step). The page holds no data: its script fetches `/api/v1/status`
//! and builds the DOM with `textContent`, so nothing from a target is ever parsed as markup.
//!
//! The Content-Security-Policy allows exactly the inlined script and stylesheet (by SHA-256),
//! requests to this origin only, and nothing else: no other script, frame, form or plugin.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::HeaderValue;

const HTML: &str = include_str!("assets/index.html");
const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");
/// Where `index.html` takes the stylesheet and the script.
const CSS_SLOT: &str = "<style></style>";
const JS_SLOT: &str = "<script></script>";

/// The assembled page and the policy that goes with it.
pub(super) struct Dashboard {
    /// `index.html` with `dashboard.css` and `dashboard.js` inlined.
    pub(super) html: Bytes,
    /// The `Content-Security-Policy` header value.
    pub(super) csp: HeaderValue,
}

impl Dashboard {
    pub(super) fn new() -> Dashboard {
        let html = HTML.replacen(CSS_SLOT, &format!("<style>{CSS}</style>"), 1).replacen(
            JS_SLOT,
            &format!("<script>{JS}</script>"),
            1,
        );
        let csp = format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(JS),
            sha256_source(CSS),
        );
        // Base64 and ASCII punctuation only: always a valid header value.
        let csp =
            HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        Dashboard { html: Bytes::from(html), csp }
    }
}

/// A CSP hash source: browsers hash an inline element's text exactly as it is in the page.
fn sha256_source(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!("sha256-{}", BASE64.encode(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stylesheet_and_script_are_inlined_once_and_hashed() {
        let page = Dashboard::new();
        let html = std::str::from_utf8(&page.html).expect("UTF-8");
        assert_eq!(HTML.matches(CSS_SLOT).count(), 1, "index.html needs exactly one empty <style>");
        assert_eq!(HTML.matches(JS_SLOT).count(), 1, "index.html needs exactly one empty <script>");
        assert!(html.contains(&format!("<style>{CSS}</style>")));
        assert!(html.contains(&format!("<script>{JS}</script>")));
        let csp = page.csp.to_str().expect("ASCII");
        assert!(csp.contains(&format!("script-src '{}'", sha256_source(JS))), "{csp}");
        assert!(csp.contains(&format!("style-src '{}'", sha256_source(CSS))), "{csp}");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
    }

    #[test]
    fn assets_cannot_end_their_own_element_and_never_use_inner_html() {
        // An early `</script>` would cut the script (and break its hash); innerHTML & co. would
        // parse data as markup.
        assert!(!JS.to_ascii_lowercase().contains("</script"));
        assert!(!CSS.to_ascii_lowercase().contains("</style"));
        for sink in
            ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"]
        {
            assert!(!JS.contains(sink), "dashboard.js uses {sink}");
        }
        // The page carries no CR: HTML parsers turn CR LF into LF, which would change the hashes.
        assert!(!HTML.contains('\r') && !CSS.contains('\r') && !JS.contains('\r'));
    }

    #[test]
    fn sha256_source_matches_a_known_digest() {
        // echo -n 'abc' | openssl dgst -sha256 -binary | base64
        assert_eq!(sha256_source("abc"), "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }
}
