//! Where requests go: a parsed and resolved `http://` or `https://` URL.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// The host under test, or another origin a redirect leads to.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `host[:port]` for the `Host` header (the port only when not the scheme's default).
    pub authority: String,
    /// Every address the name resolved to, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// The URL as the user gave it, without a trailing slash and with its secret parameters
    /// masked (for messages).
    pub url: String,
    /// Path prefix of the URL (empty or e.g. `/prefix`), put before every step's path.
    pub base_path: String,
    /// The run's TLS configuration (also kept for http, as a redirect may lead to https).
    pub tls: Option<Arc<ClientConfig>>,
    /// For https: the name the certificate must carry.
    pub server_name: Option<ServerName<'static>>,
}

/// Why a URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not http(s)://host[:port][/path].
    #[error("{0:?} is not a URL like http://127.0.0.1:8000 or https://api.example.com")]
    Malformed(String),
    /// Another scheme.
    #[error("{url:?}: loadgen speaks http:// and https://, not {scheme}://")]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// Credentials in the URL.
    #[error("{0:?}: credentials in the URL are not sent; give them as a header or a login step")]
    Credentials(String),
    /// The name does not resolve.
    #[error("{url:?}: cannot resolve {authority}: {cause}")]
    Resolve {
        /// The URL.
        url: String,
        /// host:port.
        authority: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The TLS configuration is missing for an https URL.
    #[error("{0:?}: https needs TLS settings")]
    NoTls(String),
}

impl Target {
    /// Parses and resolves `url`; `tls` is the run's TLS configuration, used for https.
    pub async fn resolve(url: &str, tls: Option<&Arc<ClientConfig>>) -> Result<Self, TargetError> {
        let trimmed = url.trim().trim_end_matches('/');
        let parsed = url::Url::parse(trimmed)
            .map_err(|_| TargetError::Malformed(common::redact::reference(url)))?;
        let scheme = match parsed.scheme() {
            "http" => "http",
            "https" => "https",
            other => {
                return Err(TargetError::Scheme {
                    url: common::redact::reference(url),
                    scheme: other.to_owned(),
                });
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(TargetError::Credentials(common::redact::reference(url)));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(TargetError::Malformed(common::redact::reference(url))),
        };
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| TargetError::Malformed(common::redact::reference(url)))?;
        let server_name = match scheme {
            "https" => {
                tls.ok_or_else(|| TargetError::NoTls(common::redact::reference(url)))?;
                Some(
                    ServerName::try_from(host)
                        .map_err(|_| TargetError::Malformed(common::redact::reference(url)))?,
                )
            }
            _ => None,
        };
        let host_in_url = parsed.host_str().unwrap_or_default();
        let authority = match parsed.port() {
            Some(port) => format!("{host_in_url}:{port}"),
            None => host_in_url.to_owned(),
        };
        let lookup = format!("{host_in_url}:{port}");
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&lookup)
            .await
            .map_err(|cause| TargetError::Resolve {
                url: common::redact::reference(url),
                authority: lookup.clone(),
                cause,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(TargetError::Resolve {
                url: common::redact::reference(url),
                authority: lookup,
                cause: std::io::Error::other("no address"),
            });
        }
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            authority,
            addrs,
            url: common::redact::url(trimmed),
            base_path,
            tls: tls.cloned(),
            server_name,
        })
    }

    /// `scheme://authority`, what a redirect is compared with.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_and_resolves_urls() {
        let t = Target::resolve("http://127.0.0.1:8000/", None)
            .await
            .unwrap();
        assert_eq!(
            (
                t.authority.as_str(),
                t.addrs[0].port(),
                t.base_path.as_str()
            ),
            ("127.0.0.1:8000", 8000, "")
        );
        let t = Target::resolve("http://localhost/prefix", None)
            .await
            .unwrap();
        assert_eq!((t.addrs[0].port(), t.base_path.as_str()), (80, "/prefix"));
        assert_eq!(t.authority, "localhost");
        let t = Target::resolve("http://[::1]:81", None).await.unwrap();
        assert_eq!((t.authority.as_str(), t.addrs[0].port()), ("[::1]:81", 81));
        let config = super::super::tls::client_config(&super::super::TlsSettings {
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        let t = Target::resolve("https://127.0.0.1", Some(&config))
            .await
            .unwrap();
        assert_eq!(
            (t.addrs[0].port(), t.origin().as_str()),
            (443, "https://127.0.0.1")
        );
        assert!(t.server_name.is_some());
        for (url, error) in [
            ("127.0.0.1:8000", "not a URL"),
            ("ftp://x", "not ftp://"),
            ("http://u:secret@x", "credentials"),
            ("https://x", "needs TLS"),
        ] {
            let message = Target::resolve(url, None).await.unwrap_err().to_string();
            assert!(message.contains(error), "{url}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }
}
