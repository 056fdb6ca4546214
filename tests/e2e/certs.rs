//! Certificates for the TLS scenarios: a CA of the test's own and server certificates for
//! `localhost` it signs, valid for as many days as asked.

use rcgen::{CertificateParams, Issuer, KeyPair};

/// A server certificate and key (PEM) and the CA (PEM) that signed it.
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate for `localhost` valid for `days` more days (negative: expired that many
/// days ago), from a new CA.
pub fn issue(days: i64) -> Issued {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30.max(1 - days));
    params.not_after = now + time::Duration::days(days);
    let cert = params.signed_by(&key, &issuer).unwrap();
    Issued { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}
