//! The lab's certificates, made with [`parallax::pki`] when a lab starts and written as PEM files
//! for nginx, HAProxy and parallax's `ca_file`: one CA for the "cluster", a leaf per TLS secret,
//! and the ingress controller's self-signed default certificate; then `expired` (for
//! `expired.lab`, signed by the lab CA, long expired), `pinned` (for `pinned.lab`: self-signed and
//! `CA:TRUE` as `openssl req -x509` makes it, which its users pin as their `ca_file`) and
//! `pinned-other` (another like it, served by nobody).

use std::path::{Path, PathBuf};

use parallax::pki::{Authority, Leaf, LeafSpec, Validity};

/// The subject of the controller's default certificate, as ingress-nginx names its own.
pub const FAKE_CERT_CN: &str = "Kubernetes Ingress Controller Fake Certificate";

/// Where the PEM files of a lab are.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (what clients trust: `ca_file`).
    pub ca: PathBuf,
    dir: PathBuf,
}

/// A certificate and key pair on disk.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    /// Leaf certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// Certificate followed by key, the single file HAProxy's `crt` takes.
    pub combined: PathBuf,
}

impl Pki {
    /// Makes the CA, one leaf per `(secret name, SANs)` signed by it, and the self-signed default
    /// certificate (`fake`), all under `dir`. Fixed dates ([`Validity::CURRENT`]), so the lab does
    /// not depend on when it runs (until 2060).
    pub fn create(dir: &Path, secrets: &[(&str, &[&str])]) -> Pki {
        std::fs::create_dir_all(dir).expect("create the pki directory");
        let authority = Authority::new("parallax lab CA", Validity::CURRENT).expect("ca certificate");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, authority.pem()).expect("write ca.pem");

        for (name, sans) in secrets {
            let spec = LeafSpec::new(sans).common_name(sans.first().copied().unwrap_or(name));
            write_pair(dir, name, &authority.issue(&spec).expect("sign a leaf"));
        }
        let fake = LeafSpec::new(&["ingress.local"]).common_name(FAKE_CERT_CN);
        write_pair(dir, "fake", &fake.self_signed().expect("self-signed default certificate"));
        let expired = LeafSpec::new(&["expired.lab"]).validity(Validity::EXPIRED);
        write_pair(dir, "expired", &authority.issue(&expired).expect("sign the expired leaf"));
        for name in ["pinned", "pinned-other"] {
            let pinned = LeafSpec::new(&["pinned.lab"]).ca_flagged().self_signed();
            write_pair(dir, name, &pinned.expect("self-signed CA:TRUE certificate"));
        }
        Pki { ca, dir: dir.to_owned() }
    }

    /// The files of secret `name` (`fake`: the default certificate).
    pub fn pair(&self, name: &str) -> KeyPairFiles {
        KeyPairFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
            combined: self.dir.join(format!("{name}.pem")),
        }
    }
}

fn write_pair(dir: &Path, name: &str, leaf: &Leaf) {
    let (cert, key) = (leaf.pem(), leaf.key_pem());
    std::fs::write(dir.join(format!("{name}.crt")), cert).expect("write a certificate");
    std::fs::write(dir.join(format!("{name}.key")), key).expect("write a key");
    std::fs::write(dir.join(format!("{name}.pem")), format!("{cert}{key}")).expect("write a combined pem");
}
