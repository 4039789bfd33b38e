//! TLS for `https://` targets: rustls with the ring provider (no C build), the system's roots,
//! `--ca-cert`, or `--insecure`. One client configuration per run; its session cache lets a
//! user's reconnects resume their TLS session instead of a full handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// How servers' certificates are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// Trust these PEM certificates instead of the system's roots. A path on one machine: a
    /// master does not send it to its workers, whose machines may not have it.
    #[serde(skip)]
    pub ca_cert: Option<PathBuf>,
    /// Check no certificate at all (Locust's `verify=False`).
    pub insecure: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `--ca-cert` could not be read.
    #[error("--ca-cert {path}: {cause}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// No root certificate anywhere.
    #[error(
        "no trusted root certificates found on this system (install Debian's ca-certificates), \
         or give --ca-cert FILE or --insecure"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration every https connection of a run shares.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if settings.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else if let Some(path) = &settings.ca_cert {
        let (roots, pinned) = ca_file(path)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(rustls::Error::General(e.to_string())))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CaFile { webpki, pinned }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(system_roots()?)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of `--ca-cert`, as trust anchors and as they are (to recognise one that a
/// server presents itself).
fn ca_file(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut roots = RootCertStore::empty();
    let ca_error = |cause: String| TlsError::CaCert {
        path: path.to_owned(),
        cause,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(ca_error("holds no PEM certificate".into()));
    }
    for certificate in &certificates {
        roots
            .add(certificate.clone())
            .map_err(|e| ca_error(e.to_string()))?;
    }
    Ok((roots, certificates))
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable entries are skipped, as every client using the system's store does.
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// `--ca-cert` as users mean it: the file's certificates are trust anchors, and a server that
/// presents one of them itself is trusted for that very certificate. `openssl req -x509` marks
/// a self-signed certificate as a CA, which webpki refuses as a server's own
/// (`CaUsedAsEndEntity`); for a certificate that is byte for byte in the file, that refusal is
/// lifted, and nothing else: the name is still checked, and so is the validity period, which
/// webpki checks before the CA mark (a test below keeps that so). The handshake's signature
/// still proves that the server holds the certificate's key.
#[derive(Debug)]
struct CaFile {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFile {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
                if other
                    .0
                    .downcast_ref::<webpki::Error>()
                    .is_some_and(|e| matches!(e, webpki::Error::CaUsedAsEndEntity))
                    && self
                        .pinned
                        .iter()
                        .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&certificate, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `--insecure`: any certificate for any name, but the handshake's signatures are still checked
/// (so the session is still encrypted to whoever holds the key).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate marked as a CA, as `openssl req -x509` makes, for `names`,
    /// valid from the start of year `from` to the start of year `to`.
    fn self_signed_ca(names: &[&str], from: i32, to: i32) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec())
    }

    fn verifier(pinned: &[CertificateDer<'static>]) -> CaFile {
        let mut roots = RootCertStore::empty();
        for certificate in pinned {
            roots.add(certificate.clone()).unwrap();
        }
        CaFile {
            webpki: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap(),
            pinned: pinned.to_vec(),
        }
    }

    fn verify(verifier: &CaFile, presented: &CertificateDer<'_>, name: &str) -> Result<(), String> {
        verifier
            .verify_server_cert(
                presented,
                &[],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_self_signed_ca_in_the_file_is_trusted_for_its_names_and_period_only() {
        let good = self_signed_ca(&["localhost", "127.0.0.1"], 2020, 2200);
        let trusting = verifier(std::slice::from_ref(&good));
        assert_eq!(verify(&trusting, &good, "localhost"), Ok(()));
        assert_eq!(verify(&trusting, &good, "127.0.0.1"), Ok(()));
        let other_name = verify(&trusting, &good, "api.example").unwrap_err();
        assert!(other_name.contains("not valid for name"), "{other_name}");

        // webpki checks the period before the CA mark: an expired or future certificate is
        // refused as such, never let through as a pinned one.
        let expired = self_signed_ca(&["localhost"], 2000, 2001);
        let error = verify(
            &verifier(std::slice::from_ref(&expired)),
            &expired,
            "localhost",
        );
        assert!(
            error.as_ref().is_err_and(|e| e.contains("expired")),
            "{error:?}"
        );
        let future = self_signed_ca(&["localhost"], 2190, 2200);
        let error = verify(
            &verifier(std::slice::from_ref(&future)),
            &future,
            "localhost",
        );
        assert!(
            error.as_ref().is_err_and(|e| e.contains("not valid yet")),
            "{error:?}"
        );

        // Another self-signed certificate is not trusted because one is.
        let stranger = self_signed_ca(&["localhost"], 2020, 2200);
        let error = verify(&trusting, &stranger, "localhost").unwrap_err();
        assert!(error.contains("CaUsedAsEndEntity"), "{error}");
    }
}
