//! The lab's certificates, made with rcgen when a lab starts and written as PEM files for nginx,
//! HAProxy and parallax's `ca_file`: one CA for the "cluster", a leaf per TLS secret, and the
//! ingress controller's self-signed default certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

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
    /// certificate (`fake`), all under `dir`.
    pub fn create(dir: &Path, secrets: &[(&str, &[&str])]) -> Pki {
        std::fs::create_dir_all(dir).expect("create the pki directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.distinguished_name.push(DnType::CommonName, "parallax lab CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut ca_params);
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write ca.pem");

        for (name, sans) in secrets {
            let (params, key) = leaf(sans, sans.first().copied().unwrap_or(name));
            let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("sign a leaf");
            write_pair(dir, name, &cert.pem(), &key.serialize_pem());
        }
        let (params, key) = leaf(&["ingress.local"], FAKE_CERT_CN);
        let cert = params.self_signed(&key).expect("self-signed default certificate");
        write_pair(dir, "fake", &cert.pem(), &key.serialize_pem());
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

fn leaf(sans: &[&str], cn: &str) -> (CertificateParams, KeyPair) {
    let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params);
    (params, KeyPair::generate().expect("leaf key"))
}

/// Fixed dates, so the lab does not depend on when it runs (until 2060).
fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2060, 1, 1);
}

fn write_pair(dir: &Path, name: &str, cert: &str, key: &str) {
    std::fs::write(dir.join(format!("{name}.crt")), cert).expect("write a certificate");
    std::fs::write(dir.join(format!("{name}.key")), key).expect("write a key");
    std::fs::write(dir.join(format!("{name}.pem")), format!("{cert}{key}")).expect("write a combined pem");
}
