//! Certificates made with rcgen at test time: a CA, leaves with chosen SANs and validity windows,
//! self-signed leaves, and PEM files for `ca_file`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A leaf's validity window. Fixed dates, so the tests do not depend on when they run (until
/// 2060), and a test that moves the prober's clock knows exactly where the edges are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// 2020-01-01 to 2060-01-01.
    Current,
    /// 2001-01-01 to 2002-01-01.
    Expired,
    /// 2070-01-01 to 2080-01-01.
    NotYetValid,
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) {
        let (from, to) = match self {
            Validity::Current => ((2020, 1, 1), (2060, 1, 1)),
            Validity::Expired => ((2001, 1, 1), (2002, 1, 1)),
            Validity::NotYetValid => ((2070, 1, 1), (2080, 1, 1)),
        };
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    }
}

/// Unix seconds of 2061-01-01, a moment after every `Validity::Current` leaf expired.
pub const AFTER_CURRENT_UNIX: u64 = 2_871_763_200;

/// A certificate authority that issues leaves.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new root CA named `cn` (valid 2000-2100).
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    /// A leaf valid now for `sans` (DNS names, or IP literals which become IP SANs).
    pub fn leaf(&self, sans: &[&str]) -> Leaf {
        self.leaf_with(sans, Validity::Current)
    }

    /// A leaf for `sans` with the given validity window.
    pub fn leaf_with(&self, sans: &[&str], validity: Validity) -> Leaf {
        let (params, key) = leaf_params(sans, validity);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign leaf");
        Leaf::new(cert, key, sans)
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
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
    let (params, key) = leaf_params(sans, Validity::Current);
    let cert = params.self_signed(&key).expect("self-signed leaf");
    Leaf::new(cert, key, sans)
}

fn leaf_params(sans: &[&str], validity: Validity) -> (CertificateParams, KeyPair) {
    let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, sans.first().copied().unwrap_or("leaf"));
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity.apply(&mut params);
    (params, KeyPair::generate().expect("leaf key"))
}

/// A server certificate and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The leaf certificate (DER).
    pub cert: CertificateDer<'static>,
    /// PKCS#8 key (DER).
    key_pkcs8: Vec<u8>,
    /// The SANs it was made for.
    pub sans: Vec<String>,
    /// Its subject CN.
    pub cn: String,
}

impl Leaf {
    fn new(cert: rcgen::Certificate, key: KeyPair, sans: &[&str]) -> Leaf {
        Leaf {
            cert: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            cn: sans.first().copied().unwrap_or("leaf").to_owned(),
        }
    }

    /// The chain a server sends: the leaf only (the root is the client's business).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    /// The private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// A rustls `CertifiedKey` for server use.
    pub fn certified(&self) -> std::sync::Arc<rustls::sign::CertifiedKey> {
        let signer = rustls::crypto::ring::sign::any_supported_type(&self.key()).expect("signing key");
        std::sync::Arc::new(rustls::sign::CertifiedKey::new(self.chain(), signer))
    }
}
