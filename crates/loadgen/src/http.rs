//! HTTP/1.1 for virtual users: each user holds its own keep-alive connection, as Locust's and
//! k6's users do, so the server sees as many connections as there are users. Requests are
//! encoded and answers parsed (with `httparse`, hyper's parser) right in the user's task.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::Method;
use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

impl From<HttpError> for crate::stats::Failure {
    fn from(error: HttpError) -> Self {
        use crate::stats::FailureKind;
        let kind = match &error {
            HttpError::Refused(_) => FailureKind::Refused,
            HttpError::Connection(_) => FailureKind::Connection,
            HttpError::Timeout(_) => FailureKind::Timeout,
        };
        Self {
            kind,
            message: error.to_string(),
        }
    }
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

/// One user's connection to the target, opened on first use and again after the server closes
/// it. HTTP/1.1 is spoken directly on the socket inside the user's own task: one write and
/// usually one read per request, no channel or second task between the user and its socket
/// (hyper's client connection costs two task hand-offs per request, which is most of the gap to
/// wrk on a pinned core).
pub struct Connection {
    target: std::rc::Rc<Target>,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    incoming: BytesMut,
    timeout: Duration,
}

/// How the end of a body is found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed status line and headers.
#[derive(Debug)]
struct Head {
    status: u16,
    length: usize,
    framing: Framing,
    keep_alive: bool,
}

/// Parses the head of an answer at the start of `buf`; `None` until it is complete.
fn parse_head(buf: &[u8], method_is_head: bool) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Connection(format!("malformed answer: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            content_length = Some(
                value.ok_or_else(|| HttpError::Connection("malformed Content-Length".into()))?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header
                .value
                .to_ascii_lowercase()
                .windows(7)
                .any(|w| w == b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value.to_ascii_lowercase();
            if value.windows(5).any(|w| w == b"close") {
                keep_alive = false;
            } else if value.windows(10).any(|w| w == b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    // RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304; chunked wins over a length.
    let framing =
        if method_is_head || (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::None
        } else if chunked {
            Framing::Chunked
        } else if let Some(length) = content_length {
            Framing::Length(length)
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
    Ok(Some(Head {
        status,
        length,
        framing,
        keep_alive,
    }))
}

/// Decodes a chunked body at the start of `buf`: `Some((body, bytes used))` once complete.
fn decode_chunked(buf: &[u8]) -> Result<Option<(BytesMut, usize)>, HttpError> {
    let mut body = BytesMut::new();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::Connection("malformed chunked body".into())),
        };
        let size =
            usize::try_from(size).map_err(|_| HttpError::Connection("chunk too large".into()))?;
        at += start;
        if size == 0 {
            // Trailers end with an empty line; usually there are none.
            let rest = &buf[at..];
            return Ok(match rest.windows(2).position(|w| w == b"\r\n") {
                Some(0) => Some((body, at + 2)),
                Some(_) => rest
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|end| (body, at + end + 4)),
                None => None,
            });
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

impl Connection {
    /// A connection (not yet open) to `target`; a request that takes longer than `timeout` fails.
    pub fn new(target: std::rc::Rc<Target>, timeout: Duration) -> Self {
        Self {
            target,
            stream: None,
            request: Vec::with_capacity(512),
            incoming: BytesMut::new(),
            timeout,
        }
    }

    async fn open(&mut self) -> Result<(), HttpError> {
        let addr = self.target.addr;
        let stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpError::Refused(addr),
            _ => HttpError::Connection(format!("connecting to {addr}: {e}")),
        })?;
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        self.incoming.clear();
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        payload: &Payload,
    ) -> Result<Answer, HttpError> {
        self.encode(method, path_and_query, headers, payload);
        let timeout = self.timeout;
        let result =
            match tokio::time::timeout(timeout, self.exchange(*method == Method::HEAD)).await {
                Ok(result) => result,
                Err(_) => Err(HttpError::Timeout(timeout)),
            };
        if result.is_err() {
            // Never reuse a connection in an unknown state.
            self.stream = None;
        }
        result
    }

    fn encode(
        &mut self,
        method: &Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        payload: &Payload,
    ) {
        let r = &mut self.request;
        r.clear();
        r.extend_from_slice(method.as_str().as_bytes());
        r.push(b' ');
        r.extend_from_slice(self.target.base_path.as_bytes());
        r.extend_from_slice(path_and_query.as_bytes());
        r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        r.extend_from_slice(self.target.authority.as_bytes());
        r.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            r.extend_from_slice(name.as_str().as_bytes());
            r.extend_from_slice(b": ");
            r.extend_from_slice(value.as_bytes());
            r.extend_from_slice(b"\r\n");
        }
        if let Some(content_type) = &payload.content_type {
            r.extend_from_slice(b"Content-Type: ");
            r.extend_from_slice(content_type.as_bytes());
            r.extend_from_slice(b"\r\n");
        }
        if !payload.bytes.is_empty()
            || matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        {
            r.extend_from_slice(b"Content-Length: ");
            r.extend_from_slice(payload.bytes.len().to_string().as_bytes());
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(&payload.bytes);
    }

    async fn exchange(&mut self, is_head: bool) -> Result<Answer, HttpError> {
        // A kept-alive connection may have been closed by the server while idle: if nothing of
        // the answer arrives on it, the request was never processed, so one retry on a new
        // connection is safe for any method.
        let reused = self.stream.is_some();
        match self.attempt(is_head).await {
            Err(Attempt::StaleConnection) if reused => {
                self.stream = None;
                match self.attempt(is_head).await {
                    Ok(answer) => Ok(answer),
                    Err(Attempt::StaleConnection) => Err(HttpError::Connection(
                        "connection closed before any answer".into(),
                    )),
                    Err(Attempt::Failed(e)) => Err(e),
                }
            }
            Err(Attempt::StaleConnection) => Err(HttpError::Connection(
                "connection closed before any answer".into(),
            )),
            Err(Attempt::Failed(e)) => Err(e),
            Ok(answer) => Ok(answer),
        }
    }

    async fn attempt(&mut self, is_head: bool) -> Result<Answer, Attempt> {
        if self.stream.is_none() {
            self.open().await.map_err(Attempt::Failed)?;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Attempt::Failed(HttpError::Connection(
                "no connection".into(),
            )));
        };
        if let Err(e) = stream.write_all(&self.request).await {
            return Err(match e.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    Attempt::StaleConnection
                }
                _ => Attempt::Failed(HttpError::Connection(format!("sending: {e}"))),
            });
        }
        self.incoming.clear();
        let mut received_any = false;
        loop {
            // Interim 1xx answers are skipped: the final one follows on the same connection.
            if let Some(head) = parse_head(&self.incoming, is_head).map_err(Attempt::Failed)? {
                if (100..200).contains(&head.status) && head.status != 101 {
                    let _ = self.incoming.split_to(head.length);
                    continue;
                }
                let complete = match head.framing {
                    Framing::None => Some((BytesMut::new(), head.length)),
                    Framing::Length(n) => (self.incoming.len() >= head.length + n).then(|| {
                        let mut all = self.incoming.split_to(head.length + n);
                        (all.split_off(head.length), 0)
                    }),
                    Framing::Chunked => decode_chunked(&self.incoming[head.length..])
                        .map_err(Attempt::Failed)?
                        .map(|(body, used)| (body, head.length + used)),
                    Framing::UntilClose => None,
                };
                if let Some((body, consumed)) = complete {
                    if consumed > 0 {
                        let _ = self.incoming.split_to(consumed.min(self.incoming.len()));
                    }
                    if !head.keep_alive {
                        self.stream = None;
                    }
                    return Ok(Answer {
                        status: head.status,
                        body: body.freeze(),
                    });
                }
                // Until-close bodies end at EOF, handled below.
                if head.framing == Framing::UntilClose && self.stream.is_none() {
                    let body = self.incoming.split_off(head.length);
                    return Ok(Answer {
                        status: head.status,
                        body: body.freeze(),
                    });
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(Attempt::Failed(HttpError::Connection(
                    "connection closed mid-answer".into(),
                )));
            };
            self.incoming.reserve(8 * 1024);
            match stream.read_buf(&mut self.incoming).await {
                Ok(0) if !received_any => return Err(Attempt::StaleConnection),
                Ok(0) => {
                    // EOF: the end of an until-close body, or a truncated answer.
                    self.stream = None;
                    let head = parse_head(&self.incoming, is_head).map_err(Attempt::Failed)?;
                    match head {
                        Some(head) if head.framing == Framing::UntilClose => continue,
                        _ => {
                            return Err(Attempt::Failed(HttpError::Connection(
                                "connection closed mid-answer".into(),
                            )));
                        }
                    }
                }
                Ok(_) => received_any = true,
                Err(e) if !received_any && e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(Attempt::StaleConnection);
                }
                Err(e) => {
                    return Err(Attempt::Failed(HttpError::Connection(format!(
                        "receiving: {e}"
                    ))));
                }
            }
        }
    }
}

enum Attempt {
    /// The connection was dead before anything came back.
    StaleConnection,
    Failed(HttpError),
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

    #[test]
    fn frames_answers() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.framing, head.keep_alive),
            (200, Framing::Length(5), true)
        );
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Len", false)
                .unwrap()
                .is_none()
        );
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let head = parse_head(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::None);
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::None, "HEAD has no body");
        let head = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.framing, head.keep_alive),
            (Framing::UntilClose, false)
        );
        let head = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive, "HTTP/1.0 closes unless told otherwise");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
    }

    #[test]
    fn decodes_chunked_bodies() {
        let (body, used) = decode_chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT")
            .unwrap()
            .unwrap();
        assert_eq!((&body[..], used), (&b"hello world"[..], 26));
        assert!(decode_chunked(b"5\r\nhel").unwrap().is_none());
        assert!(decode_chunked(b"5\r\nhello\r\n0\r\n").unwrap().is_none());
        let (body, _) = decode_chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(&body[..], b"abc");
        assert!(decode_chunked(b"zz\r\n").is_err());
    }

    /// A real server on loopback: keep-alive reuse, an answer split over several reads, a
    /// chunked answer, a server that closes after answering, and one that closes idle
    /// connections (the request is retried once on a new connection).
    #[tokio::test]
    async fn speaks_to_a_real_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // Connection 1: two answers, the second split and chunked, then close while idle.
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"POST /p/a HTTP/1.1\r\nHost: "));
            assert!(buf[..n].ends_with(b"Content-Length: 4\r\n\r\nbody"));
            socket
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            socket.write_all(b"c\r\n0\r\n\r\n").await.unwrap();
            drop(socket);
            // Connection 2: the retried request; answers and closes.
            let (mut socket, _) = listener.accept().await.unwrap();
            let n = socket.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /p/c HTTP/1.1"));
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                .await
                .unwrap();
        });
        let target = std::rc::Rc::new(Target {
            authority: addr.to_string(),
            addr,
            url: format!("http://{addr}/p"),
            base_path: "/p".into(),
        });
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let mut c = Connection::new(target, Duration::from_secs(5));
                let body = Payload {
                    content_type: None,
                    bytes: Bytes::from_static(b"body"),
                };
                let a = c.send(&Method::POST, "/a", &[], &body).await.unwrap();
                assert_eq!((a.status, &a.body[..]), (201, &b"ok"[..]));
                let b = c
                    .send(&Method::GET, "/b", &[], &Payload::default())
                    .await
                    .unwrap();
                assert_eq!((b.status, &b.body[..]), (200, &b"abc"[..]));
                tokio::time::sleep(Duration::from_millis(50)).await;
                let closed = c
                    .send(&Method::GET, "/c", &[], &Payload::default())
                    .await
                    .unwrap();
                assert_eq!(
                    (closed.status, &closed.body[..]),
                    (200, &b"until close"[..])
                );
            })
            .await;
        server.await.unwrap();
    }
}
