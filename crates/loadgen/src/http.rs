//! HTTP/1.1 for virtual users: each user holds its own keep-alive connection, as Locust's and
//! k6's users do, so the server sees as many connections as there are users. Built on hyper's
//! connection API directly: no pool to share, no lock between users.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The host under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` for the `Host` header.
    pub authority: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The URL as the user gave it (for messages).
    pub url: String,
    /// Path prefix of the URL (empty or e.g. `/prefix`), put before every step's path.
    pub base_path: String,
}

/// Why `--host` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not http://host[:port][/path].
    #[error("--host {0:?} is not a URL like http://127.0.0.1:8000")]
    Malformed(String),
    /// https is not supported.
    #[error("--host {0:?}: https is not supported yet; point loadgen at the API's plain http port")]
    Https(String),
    /// The name does not resolve.
    #[error("--host {url:?}: cannot resolve {authority}: {cause}")]
    Resolve {
        /// The URL.
        url: String,
        /// host:port.
        authority: String,
        /// Why.
        cause: std::io::Error,
    },
}

impl Target {
    /// Parses and resolves `url` (`http://host[:port][/prefix]`).
    pub async fn resolve(url: &str) -> Result<Self, TargetError> {
        let trimmed = url.trim().trim_end_matches('/');
        if trimmed.starts_with("https://") {
            return Err(TargetError::Https(url.to_owned()));
        }
        let rest = trimmed
            .strip_prefix("http://")
            .ok_or_else(|| TargetError::Malformed(url.to_owned()))?;
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, String::new()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(TargetError::Malformed(url.to_owned()));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|cause| TargetError::Resolve {
                url: url.to_owned(),
                authority: with_port.clone(),
                cause,
            })?
            .next()
            .ok_or_else(|| TargetError::Malformed(url.to_owned()))?;
        Ok(Self {
            authority: authority.to_owned(),
            addr,
            url: trimmed.to_owned(),
            base_path,
        })
    }
}

/// A request failure, worded for the failures table.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// Nothing listens there.
    #[error("ConnectionRefusedError: connection refused by {0}")]
    Refused(SocketAddr),
    /// Connect or exchange failed.
    #[error("ConnectionError: {0}")]
    Connection(String),
    /// No complete answer in time.
    #[error("Timeout: no answer within {0:?}")]
    Timeout(Duration),
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

/// A request body, ready to send.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

impl Payload {
    /// A JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            content_type: Some("application/json".into()),
            bytes: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// An urlencoded form.
    pub fn form<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self {
            content_type: Some("application/x-www-form-urlencoded".into()),
            bytes: Bytes::from(encoded),
        }
    }

    /// A multipart form: text fields and files.
    pub fn multipart(parts: &[MultipartField<'_>]) -> Self {
        let boundary = format!("loadgen-{:016x}", rand::random::<u64>());
        let size: usize = parts.iter().map(|p| p.bytes.len() + 200).sum();
        let mut body = BytesMut::with_capacity(size + 64);
        for part in parts {
            body.put_slice(format!("--{boundary}\r\n").as_bytes());
            let disposition = match part.filename {
                Some(filename) => format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n",
                    part.name, filename
                ),
                None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", part.name),
            };
            body.put_slice(disposition.as_bytes());
            if let Some(content_type) = part.content_type {
                body.put_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            body.put_slice(b"\r\n");
            body.put_slice(part.bytes);
            body.put_slice(b"\r\n");
        }
        body.put_slice(format!("--{boundary}--\r\n").as_bytes());
        Self {
            content_type: Some(format!("multipart/form-data; boundary={boundary}")),
            bytes: body.freeze(),
        }
    }
}

/// One field of a multipart body.
#[derive(Debug)]
pub struct MultipartField<'a> {
    /// Field name.
    pub name: &'a str,
    /// File name, for file parts.
    pub filename: Option<&'a str>,
    /// Content type, for file parts.
    pub content_type: Option<&'a str>,
    /// The content.
    pub bytes: &'a [u8],
}

/// One user's connection to the target, opened on first use and again after the server closes it.
pub struct Connection {
    target: std::rc::Rc<Target>,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
}

impl Connection {
    /// A connection (not yet open) to `target`; a request that takes longer than `timeout` fails.
    pub fn new(target: std::rc::Rc<Target>, timeout: Duration) -> Self {
        let host = HeaderValue::from_str(&target.authority)
            .unwrap_or(HeaderValue::from_static("localhost"));
        Self {
            target,
            host,
            sender: None,
            timeout,
        }
    }

    async fn open(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, HttpError> {
        let addr = self.target.addr;
        let stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpError::Refused(addr),
            _ => HttpError::Connection(format!("connecting to {addr}: {e}")),
        })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Connection(e.to_string()))?;
        // The connection's I/O runs beside the user on the same thread.
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        Ok(self.sender.insert(sender))
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        payload: &Payload,
    ) -> Result<Answer, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(
            timeout,
            self.exchange(method, path_and_query, headers, payload),
        )
        .await
        {
            Ok(result) => {
                if result.is_err() {
                    // Never reuse a connection in an unknown state.
                    self.sender = None;
                }
                result
            }
            Err(_) => {
                self.sender = None;
                Err(HttpError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        method: &Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        payload: &Payload,
    ) -> Result<Answer, HttpError> {
        // A kept-alive connection the server has closed fails `ready`, before anything is sent:
        // then, and only then, a new connection is safe for any method.
        let reusable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.open().await?;
        }
        let uri = format!("{}{path_and_query}", self.target.base_path);
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if let Some(request_headers) = request.headers_mut() {
            request_headers.insert(HOST, self.host.clone());
            if let Some(content_type) = &payload.content_type
                && let Ok(value) = HeaderValue::from_str(content_type)
            {
                request_headers.insert(CONTENT_TYPE, value);
            }
            if !payload.bytes.is_empty() || *method == Method::POST || *method == Method::PUT {
                request_headers.insert(CONTENT_LENGTH, HeaderValue::from(payload.bytes.len()));
            }
            for (name, value) in headers {
                request_headers.insert(name.clone(), value.clone());
            }
        }
        let request = request
            .body(Full::new(payload.bytes.clone()))
            .map_err(|e| HttpError::Connection(format!("invalid request: {e}")))?;
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| HttpError::Connection("connection lost".into()))?;
        sender
            .ready()
            .await
            .map_err(|e| HttpError::Connection(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HttpError::Connection(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::Connection(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_hosts() {
        let t = Target::resolve("http://127.0.0.1:8000/").await.unwrap();
        assert_eq!(
            (t.authority.as_str(), t.addr.port(), t.base_path.as_str()),
            ("127.0.0.1:8000", 8000, "")
        );
        let t = Target::resolve("http://localhost/prefix").await.unwrap();
        assert_eq!((t.addr.port(), t.base_path.as_str()), (80, "/prefix"));
        assert!(matches!(
            Target::resolve("https://x").await,
            Err(TargetError::Https(_))
        ));
        assert!(matches!(
            Target::resolve("127.0.0.1:8000").await,
            Err(TargetError::Malformed(_))
        ));
    }

    #[test]
    fn multipart_bodies_have_the_parts() {
        let payload = Payload::multipart(&[MultipartField {
            name: "file",
            filename: Some("a.mp4"),
            content_type: Some("video/mp4"),
            bytes: b"DATA",
        }]);
        let text = String::from_utf8(payload.bytes.to_vec()).unwrap();
        let content_type = payload.content_type.unwrap();
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n\r\nDATA\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        let form = Payload::form([("username", "a b"), ("password", "p&q")]);
        assert_eq!(&form.bytes[..], b"username=a+b&password=p%26q");
    }
}
