//! The tests' side of [`parallax::pki`], the one certificate builder: a CA whose methods panic
//! instead of returning errors (a test has nothing better to do with them), and PEM files for
//! `ca_file`.

use std::path::{Path, PathBuf};

use parallax::pki::{Authority, LeafSpec};

pub use parallax::pki::{Leaf, Validity};

/// Unix seconds of 2061-01-01, a moment after every [`Validity::CURRENT`] leaf expired.
pub const AFTER_CURRENT_UNIX: u64 = 2_871_763_200;

/// A certificate authority that issues leaves.
pub struct Ca(Authority);

impl Ca {
    /// A new root CA named `cn` ([`Validity::ROOT`]: it outlives every leaf's window).
    pub fn new(cn: &str) -> Ca {
        Ca(Authority::new(cn, Validity::ROOT).expect("ca certificate"))
    }

    /// A leaf valid now for `sans` (DNS names, or IP literals which become IP SANs).
    pub fn leaf(&self, sans: &[&str]) -> Leaf {
        self.leaf_with(sans, Validity::CURRENT)
    }

    /// A leaf for `sans` with the given validity window.
    pub fn leaf_with(&self, sans: &[&str], validity: Validity) -> Leaf {
        self.0.issue(&LeafSpec::new(sans).validity(validity)).expect("sign leaf")
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// Writes the CA certificate as `name` into `dir` and returns the path (for `ca_file`).
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).expect("write ca pem");
        path
    }
}

/// A self-signed leaf for `sans`: trusted by nobody.
pub fn self_signed(sans: &[&str]) -> Leaf {
    LeafSpec::new(sans).self_signed().expect("self-signed leaf")
}

/// The rustls key a server presents for `leaf`.
pub fn certified(leaf: &Leaf) -> std::sync::Arc<rustls::sign::CertifiedKey> {
    leaf.certified_key().expect("signing key")
}
