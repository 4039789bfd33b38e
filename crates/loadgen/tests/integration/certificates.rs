//! `--ca-cert` with the self-signed certificate users make with Debian's openssl CLI
//! (`openssl req -x509`, which marks it as a CA): trusted as given for the names it carries,
//! and for no other name.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use test_support::start_in_memory;

use crate::support::scenario;

/// `openssl req -x509 ... -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1` into
/// `dir`: (certificate, key).
fn openssl_self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// A TLS front for `plain` (host:port) with the certificate and key: its port.
async fn https_front(plain: String, cert: &Path, key: &Path) -> u16 {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
    .unwrap();
    crate::support::tls_front(Arc::new(config), plain).await
}

/// A 2 s run of one user against `host`, trusting `cert`: (exit code, stderr, JSON report).
async fn run(
    host: &str,
    cert: &Path,
    dir: &Path,
) -> (Option<i32>, String, Option<serde_json::Value>) {
    let json = dir.join(format!("report-{}.json", host.len()));
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--headless", "--only-summary", "-u", "1", "-t", "2s"])
            .args(["-H", host, "-f", &scenario("reads.toml")])
            .arg("--ca-cert")
            .arg(cert)
            .arg("--report-json")
            .arg(&json)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the run ends")
    .unwrap();
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openssl_self_signed_certificate_is_trusted_as_given_for_its_names_only() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path());
    let plain = testbed.base_url().trim_start_matches("http://").to_owned();
    let port = https_front(plain, &cert, &key).await;

    let (code, stderr, report) = run(&format!("https://127.0.0.1:{port}"), &cert, dir.path()).await;
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}: {stderr}");
    let report = report.unwrap_or_else(|| panic!("no report: {stderr}"));
    let total = &report["steady_total"];
    assert!(total["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(total["failures"].as_u64(), Some(0), "{report}");

    // The certificate names 127.0.0.1 only: by another name the server is not trusted.
    let (code, stderr, _) = run(&format!("https://localhost:{port}"), &cert, dir.path()).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not valid for name"), "{stderr}");
    testbed.stop().await;
}
