//! Certificates made at run time with rcgen: a certificate authority, the server leaves it signs
//! (chosen names, subject and validity window) and self-signed leaves, with their PEM and the
//! rustls key a server presents.
//!
//! `parallax demo` makes its backends' certificates here, and so does every test (the
//! integration tests' support module, the lab's PEM files for nginx and HAProxy): one builder,
//! so a demo certificate and a test certificate differ only in what is asked of them. Every key
//! is ECDSA P-256 (rcgen's default; ring cannot generate RSA keys), every leaf is a TLS server
//! certificate (`digitalSignature`, `serverAuth`) unless made [`LeafSpec::ca_flagged`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::probe::timestamp::Timestamp;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or could not sign.
    #[error(transparent)]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the key.
    #[error(transparent)]
    Key(#[from] rustls::Error),
}

/// A UTC calendar day, the unit certificate validity is set in here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
}

impl Date {
    /// The day `year-month-day`.
    pub const fn new(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    /// The UTC calendar day of `t`; the epoch's for a time before it.
    pub fn of(t: SystemTime) -> Date {
        let (year, month, day) = Timestamp::from(t.max(UNIX_EPOCH)).date();
        Date::new(i32::try_from(year).unwrap_or(i32::MAX), month, day)
    }
}

/// A certificate's validity window, from the start of `not_before` to the start of `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First day of validity.
    pub not_before: Date,
    /// The day it expires.
    pub not_after: Date,
}

impl Validity {
    /// 2020-01-01 to 2060-01-01: valid whenever a test runs (until 2060), with edges a test that
    /// moves the prober's clock knows exactly.
    pub const CURRENT: Validity = Validity::between(Date::new(2020, 1, 1), Date::new(2060, 1, 1));
    /// 2001-01-01 to 2002-01-01: long expired.
    pub const EXPIRED: Validity = Validity::between(Date::new(2001, 1, 1), Date::new(2002, 1, 1));
    /// 2070-01-01 to 2080-01-01: not valid yet.
    pub const NOT_YET_VALID: Validity = Validity::between(Date::new(2070, 1, 1), Date::new(2080, 1, 1));
    /// 2000-01-01 to 2100-01-01: a root that outlives every fixed window above.
    pub const ROOT: Validity = Validity::between(Date::new(2000, 1, 1), Date::new(2100, 1, 1));

    /// From `not_before` to `not_after`.
    pub const fn between(not_before: Date, not_after: Date) -> Validity {
        Validity { not_before, not_after }
    }

    /// From the day before `now` (a clock a little behind still accepts it) for `days` days, like
    /// a real leaf.
    pub fn days_from(now: SystemTime, days: u32) -> Validity {
        let day = Duration::from_secs(86_400);
        Validity::between(Date::of(now.checked_sub(day).unwrap_or(now)), Date::of(now + day * days))
    }

    fn apply(self, params: &mut CertificateParams) {
        let at = |d: Date| rcgen::date_time_ymd(d.year, d.month, d.day);
        params.not_before = at(self.not_before);
        params.not_after = at(self.not_after);
    }
}

/// A certificate authority that signs leaves.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed root CA with common name `name`.
    pub fn new(name: &str, validity: Validity) -> Result<Authority, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity.apply(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority { cert, key })
    }

    /// The leaf `spec` describes, signed by this CA.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf, PkiError> {
        let (params, key) = spec.params()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Leaf::new(&cert, &key, spec))
    }

    /// The CA certificate in PEM (what a client trusts: `ca_file`).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate in DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

/// What a leaf is made for: its names, subject and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    names: Vec<String>,
    common_name: String,
    organization: Option<String>,
    validity: Validity,
    ca_flagged: bool,
}

impl LeafSpec {
    /// A leaf for `names` (DNS names, or IP literals, which become IP SANs), named after the first
    /// of them (`leaf` without any), valid [`Validity::CURRENT`].
    pub fn new(names: &[&str]) -> LeafSpec {
        LeafSpec {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            common_name: names.first().copied().unwrap_or("leaf").to_owned(),
            organization: None,
            validity: Validity::CURRENT,
            ca_flagged: false,
        }
    }

    /// With subject common name `name` instead of the first SAN.
    pub fn common_name(mut self, name: &str) -> LeafSpec {
        name.clone_into(&mut self.common_name);
        self
    }

    /// With an organization (`O=`) in the subject after the common name, for tests of how a
    /// subject is shown.
    pub fn organization(mut self, name: &str) -> LeafSpec {
        self.organization = Some(name.to_owned());
        self
    }

    /// With this validity window.
    pub fn validity(mut self, validity: Validity) -> LeafSpec {
        self.validity = validity;
        self
    }

    /// Flagged `CA:TRUE`, without key usage or extended key usage, as `openssl req -x509`
    /// makes a self-signed certificate (the certificate users pin with curl `--cacert`).
    pub fn ca_flagged(mut self) -> LeafSpec {
        self.ca_flagged = true;
        self
    }

    /// The leaf signed by its own key: trusted by nobody.
    pub fn self_signed(&self) -> Result<Leaf, PkiError> {
        let (params, key) = self.params()?;
        let cert = params.self_signed(&key)?;
        Ok(Leaf::new(&cert, &key, self))
    }

    fn params(&self) -> Result<(CertificateParams, KeyPair), PkiError> {
        let mut params = CertificateParams::new(self.names.clone())?;
        params.distinguished_name.push(DnType::CommonName, self.common_name.as_str());
        if let Some(organization) = &self.organization {
            params.distinguished_name.push(DnType::OrganizationName, organization.as_str());
        }
        if self.ca_flagged {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        } else {
            params.is_ca = IsCa::NoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        self.validity.apply(&mut params);
        Ok((params, KeyPair::generate()?))
    }
}

/// A server certificate and its private key.
#[derive(Clone)]
pub struct Leaf {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key_pkcs8: Vec<u8>,
    key_pem: String,
    names: Vec<String>,
    common_name: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Leaf")
            .field("names", &self.names)
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    fn new(cert: &rcgen::Certificate, key: &KeyPair, spec: &LeafSpec) -> Leaf {
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pkcs8: key.serialize_der(),
            key_pem: key.serialize_pem(),
            names: spec.names.clone(),
            common_name: spec.common_name.clone(),
        }
    }

    /// The certificate in DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key (PKCS#8 DER).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// The private key in PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The names (SANs) it was made for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Its subject common name.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The chain a server sends: the leaf only (the root is the client's business).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    /// The certificate and signing key a rustls server presents.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, PkiError> {
        self.certified_key_with_chain(self.chain())
    }

    /// The same, sending `chain` (the leaf first; some servers send their root too).
    pub fn certified_key_with_chain(
        &self,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Arc<CertifiedKey>, PkiError> {
        let signer = rustls::crypto::ring::sign::any_supported_type(&self.key())?;
        Ok(Arc::new(CertifiedKey::new(chain, signer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        let at = |secs: u64| Date::of(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), Date::new(1970, 1, 1));
        assert_eq!(at(951_782_400), Date::new(2000, 2, 29));
        assert_eq!(at(1_709_164_800), Date::new(2024, 2, 29));
        assert_eq!(at(1_735_689_599), Date::new(2024, 12, 31));
        assert_eq!(at(1_735_689_600), Date::new(2025, 1, 1));
    }

    #[test]
    fn a_rolling_window_starts_yesterday() {
        let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
        let window = Validity::days_from(now, 90);
        assert_eq!(window.not_before, Date::new(2024, 12, 31));
        assert_eq!(window.not_after, Date::new(2025, 4, 1));
    }

    #[test]
    fn leaves_carry_their_names_and_subject() {
        let ca = Authority::new("unit CA", Validity::ROOT).expect("ca");
        let leaf = ca.issue(&LeafSpec::new(&["shop.test", "127.0.0.9"])).expect("leaf");
        assert_eq!(leaf.names(), ["shop.test", "127.0.0.9"]);
        assert_eq!(leaf.common_name(), "shop.test");
        assert!(leaf.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(leaf.certified_key().is_ok());
        let fake = LeafSpec::new(&["ingress.local"]).common_name("Fake").self_signed().expect("self-signed");
        assert_eq!(fake.common_name(), "Fake");
        assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
