//! One user's connection: HTTP/1.1 spoken directly on the socket (plain or TLS) inside the
//! user's own task, so a request costs one write and usually one read, with no channel or
//! second task between the user and its socket (hyper's client connection costs two task
//! hand-offs per request, which is most of the gap to wrk on a pinned core).
//!
//! The rules that keep its numbers honest:
//! - a request is resent only if its method is idempotent, the connection had been kept alive,
//!   and not one byte came back; every resend is counted;
//! - the socket is read while a body is written, so an early answer (a 413 or a 429 to an
//!   upload) is recorded with its status;
//! - bytes left over after an answer, or arriving while the connection is idle (an unsolicited
//!   408), mean the connection is closed, never read as the next answer.

use std::cell::Cell;
use std::future::poll_fn;
use std::io::Read;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::Method;
use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::response::{Limits, Reader, Response};
use super::stream::Stream;
use super::tls_stream::TlsStream;
use super::{HttpError, Payload, Target};

/// Sent with every request, as Locust's HttpUser sends its own.
const USER_AGENT: &str = concat!("loadgen/", env!("CARGO_PKG_VERSION"));

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The whole body, decoded.
    pub body: Bytes,
    /// The `Location` header.
    pub location: Option<String>,
    /// Where the time went.
    pub timings: Timings,
    /// Whether the request was sent a second time after a stale kept-alive connection.
    pub resent: bool,
    /// `Set-Cookie` values.
    pub set_cookies: Vec<String>,
}

/// The phases of one exchange, µs; connect and TLS only when a connection was opened for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// TCP connect.
    pub connect_us: Option<u64>,
    /// TLS handshake.
    pub tls_us: Option<u64>,
    /// From the start of the request to the first byte of the answer.
    pub first_byte_us: u64,
}

/// Per-connection options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// No complete answer in this time is a failure.
    pub timeout: Duration,
    /// Size limits.
    pub limits: Limits,
    /// Send `Accept-Encoding: gzip` and decode gzip bodies.
    pub gzip: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            limits: Limits::default(),
            gzip: false,
        }
    }
}

/// A connection (opened on first use, and again whenever the server closed it).
pub struct Connection {
    target: Rc<Target>,
    options: Options,
    stream: Option<Stream>,
    request: Vec<u8>,
    incoming: BytesMut,
    /// The request timeout, one timer for the connection's life: moving a pending timer's
    /// deadline later is one atomic update, where a timer per request costs a registration
    /// in the timer wheel and its removal (it showed in profiles).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Requests written, and resends among them, each counted the moment its bytes went out:
    /// a resend whose second attempt fails or is cut off reached the server twice all the
    /// same, and one cut off while it connected never did. Shared with the other connections
    /// of the same user (redirects to another host).
    sends: Rc<Sends>,
    /// The next attempt is a resend: counted as one once it is written.
    resending: bool,
    /// An exchange is under way; still set when the next begins, it was dropped midway (its
    /// user was cut off at a stop and goes on to `on_stop`): the stream is in an unknown state.
    exchanging: bool,
}

/// What a user's connections have written so far: every request whose bytes went out, and the
/// resends among them. A request compares them before and after to tell whether it reached
/// the socket, and how many times.
#[derive(Debug, Default)]
pub struct Sends {
    written: Cell<u64>,
    resent: Cell<u64>,
}

impl Sends {
    /// Requests written, resends included.
    pub fn written(&self) -> u64 {
        self.written.get()
    }

    /// Requests written a second time after a stale kept-alive connection.
    pub fn resent(&self) -> u64 {
        self.resent.get()
    }

    /// One request written (a resend, if `resend`).
    pub fn count_written(&self, resend: bool) {
        self.written.set(self.written.get() + 1);
        if resend {
            self.resent.set(self.resent.get() + 1);
        }
    }
}

/// How one attempt ended.
enum Attempt {
    /// The kept-alive connection was dead: not one byte came back.
    Stale,
    Failed(HttpError),
}

impl From<HttpError> for Attempt {
    fn from(error: HttpError) -> Self {
        Attempt::Failed(error)
    }
}

impl Connection {
    /// A connection (not yet open) to `target`.
    pub fn new(target: Rc<Target>, options: Options) -> Self {
        Self {
            target,
            options,
            stream: None,
            request: Vec::with_capacity(512),
            incoming: BytesMut::new(),
            deadline: None,
            sends: Rc::default(),
            resending: false,
            exchanging: false,
        }
    }

    /// This connection, counting what it writes in `sends` (another connection's
    /// [`Connection::sends`]) instead of its own counters.
    pub fn sharing_sends(mut self, sends: Rc<Sends>) -> Self {
        self.sends = sends;
        self
    }

    /// The counters of what this connection has written so far.
    pub fn sends(&self) -> Rc<Sends> {
        self.sends.clone()
    }

    /// Gives back the request and read buffers (and TLS's, over https) while the user waits:
    /// with thousands of users that wait seconds between requests, idle buffers would be most
    /// of the memory. The next request allocates them again.
    pub fn release_buffers(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = BytesMut::new();
        }
        self.request = Vec::new();
        if let Some(stream) = &mut self.stream {
            stream.release_buffers();
        }
    }

    /// Where this connection goes.
    pub fn target(&self) -> &Rc<Target> {
        &self.target
    }

    /// Sends one request (`path_and_query` is sent as is: the caller adds the base path) and
    /// reads the whole answer, within the connection's timeout.
    pub async fn send(
        &mut self,
        method: &Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        payload: &Payload,
    ) -> Result<Answer, HttpError> {
        let timeout = self.options.timeout;
        self.send_within(method, path_and_query, headers, payload, timeout)
            .await
    }

    /// [`Connection::send`] with a timeout of its own (a step's `timeout`).
    pub async fn send_within(
        &mut self,
        method: &Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        payload: &Payload,
        timeout: Duration,
    ) -> Result<Answer, HttpError> {
        if self.exchanging {
            self.stream = None;
            self.incoming.clear();
        }
        self.exchanging = true;
        self.encode(method, path_and_query, headers, payload);
        if tracing::enabled!(tracing::Level::TRACE) {
            let head_end = self
                .request
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(self.request.len());
            let head = String::from_utf8_lossy(&self.request[..head_end]);
            // Headers, but never the credentials they carry.
            let head = common::redact::http_head(&head);
            tracing::trace!("request to {}:\n{head}", self.target.origin());
        }
        let started = Instant::now();
        let due = tokio::time::Instant::from_std(started) + timeout;
        let mut deadline = match self.deadline.take() {
            Some(mut deadline) => {
                deadline.as_mut().reset(due);
                deadline
            }
            None => Box::pin(tokio::time::sleep_until(due)),
        };
        let result = tokio::select! {
            biased;
            result = self.exchange(method) => result,
            () = deadline.as_mut() => Err(HttpError::Timeout(timeout)),
        };
        self.deadline = Some(deadline);
        self.exchanging = false;
        // --loglevel DEBUG: one line per request, as a user tracing a scenario wants it.
        if tracing::enabled!(tracing::Level::DEBUG) {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let origin = self.target.origin();
            let path_and_query = common::redact::path_and_query(path_and_query);
            match &result {
                Ok(answer) => tracing::debug!(
                    "{method} {origin}{path_and_query} {} {ms:.1} ms",
                    answer.status
                ),
                Err(error) => {
                    tracing::debug!("{method} {origin}{path_and_query} {error} {ms:.1} ms")
                }
            }
        }
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
        r.extend_from_slice(path_and_query.as_bytes());
        r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        r.extend_from_slice(self.target.authority.as_bytes());
        r.extend_from_slice(b"\r\nUser-Agent: ");
        r.extend_from_slice(USER_AGENT.as_bytes());
        r.extend_from_slice(b"\r\n");
        if self.options.gzip {
            r.extend_from_slice(b"Accept-Encoding: gzip\r\n");
        }
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

    async fn exchange(&mut self, method: &Method) -> Result<Answer, HttpError> {
        let mut resent = false;
        // A resend that never went out (its connection failed) is not carried to the next.
        self.resending = false;
        loop {
            let reused = self.still_open();
            match self.attempt(method).await {
                Ok(mut answer) => {
                    answer.resent = resent;
                    return Ok(answer);
                }
                Err(Attempt::Failed(error)) => return Err(error),
                // The server closed the kept-alive connection as the request went out, and
                // nothing came back: a GET can be sent again, a POST may have been processed.
                Err(Attempt::Stale) if reused && method.is_idempotent() && !resent => {
                    self.stream = None;
                    resent = true;
                    self.resending = true;
                }
                Err(Attempt::Stale) if reused && !method.is_idempotent() => {
                    return Err(HttpError::Connection(format!(
                        "the server closed a kept-alive connection without answering; a {method} \
                         is not sent again, as it may have been processed"
                    )));
                }
                Err(Attempt::Stale) => {
                    return Err(HttpError::Connection(
                        "connection closed before any answer".into(),
                    ));
                }
            }
        }
    }

    /// Whether the kept-alive connection can carry a request: not closed by the server while
    /// idle, and with nothing unsolicited (a 408) waiting on it. One non-blocking read.
    fn still_open(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut cx = Context::from_waker(Waker::noop());
        self.incoming.clear();
        self.incoming.reserve(1024);
        let open = matches!(
            tokio_util::io::poll_read_buf(Pin::new(stream), &mut cx, &mut self.incoming),
            Poll::Pending
        );
        if !open {
            self.stream = None;
            self.incoming.clear();
        }
        open
    }

    async fn open(&mut self, timings: &mut Timings) -> Result<(), HttpError> {
        let started = Instant::now();
        let mut last_error = None;
        let mut tcp = None;
        // Every address the name resolved to, in order (`localhost` may be ::1 first).
        for &addr in &self.target.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last_error = Some((addr, e)),
            }
        }
        let tcp = match (tcp, last_error) {
            (Some(tcp), _) => tcp,
            (None, Some((addr, e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(HttpError::Refused(addr));
            }
            (None, Some((addr, e))) => {
                return Err(HttpError::Connection(format!("connecting to {addr}: {e}")));
            }
            (None, None) => return Err(HttpError::Connection("no address to connect to".into())),
        };
        let _ = tcp.set_nodelay(true);
        timings.connect_us = Some(started.elapsed().as_micros() as u64);
        let stream = match (&self.target.tls, &self.target.server_name) {
            (Some(config), Some(name)) => {
                let started = Instant::now();
                let tls = TlsStream::connect(config.clone(), name.clone(), tcp)
                    .await
                    .map_err(|e| HttpError::Tls(e.to_string()))?;
                timings.tls_us = Some(started.elapsed().as_micros() as u64);
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };
        self.stream = Some(stream);
        self.incoming.clear();
        Ok(())
    }

    async fn attempt(&mut self, method: &Method) -> Result<Answer, Attempt> {
        let mut timings = Timings::default();
        if self.stream.is_none() {
            // Boxed: connecting (a TLS handshake above all) is rare and its state large; inline,
            // every request's future would carry room for it.
            Box::pin(self.open(&mut timings)).await?;
        }
        let started = Instant::now();
        let mut reader = Reader::new(*method == Method::HEAD, self.options.limits);
        self.incoming.clear();
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::Connection("no connection".into()).into());
        };
        let written = write_reading(stream, &self.request, &mut self.incoming).await;
        // Written (or reset as it was written): the server may have read it.
        self.sends
            .count_written(std::mem::take(&mut self.resending));
        let sent_whole = match written {
            Ok(sent_whole) => sent_whole,
            // The peer reset as we wrote: stale if nothing came back, else read what did.
            Err(e) if is_reset(&e) && self.incoming.is_empty() => return Err(Attempt::Stale),
            Err(e) if is_reset(&e) => false,
            Err(e) => return Err(HttpError::Connection(format!("sending: {e}")).into()),
        };
        let mut first_byte = (!self.incoming.is_empty()).then(|| started.elapsed());
        let response = loop {
            if let Some(response) = reader.feed(&mut self.incoming)? {
                break response;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(HttpError::Connection("no connection".into()).into());
            };
            // Small to start (10,000 idle users keep theirs), doubling as a body needs it.
            self.incoming.reserve(self.incoming.len().max(4 * 1024));
            match stream.read_buf(&mut self.incoming).await {
                Ok(0) if first_byte.is_none() => return Err(Attempt::Stale),
                Ok(0) => {
                    self.stream = None;
                    break reader.end_of_stream()?;
                }
                Ok(_) => {
                    first_byte.get_or_insert_with(|| started.elapsed());
                }
                Err(e) if first_byte.is_none() && is_reset(&e) => return Err(Attempt::Stale),
                Err(e) => {
                    return Err(HttpError::Connection(format!("receiving: {e}")).into());
                }
            }
        };
        // Anything after the answer is not ours to read: the connection goes.
        if !response.keep_alive || !sent_whole || !self.incoming.is_empty() {
            self.stream = None;
            self.incoming.clear();
        }
        timings.first_byte_us = first_byte.unwrap_or_default().as_micros() as u64;
        let Response {
            status,
            body,
            location,
            gzip,
            set_cookies,
            ..
        } = response;
        let body = if gzip && self.options.gzip {
            gunzip(&body, self.options.limits.max_body)?
        } else {
            body
        };
        Ok(Answer {
            status,
            body,
            location,
            timings,
            resent: false,
            set_cookies,
        })
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// Writes the whole request, reading the socket meanwhile whenever the write must wait: a
/// server may answer an upload before reading it (413, 429). `Ok(false)` when an answer began
/// before the request was fully written (the rest is not sent).
async fn write_reading(
    stream: &mut Stream,
    request: &[u8],
    incoming: &mut BytesMut,
) -> std::io::Result<bool> {
    let mut written = 0;
    let mut flushed = false;
    poll_fn(|cx| {
        loop {
            if written < request.len() {
                match Pin::new(&mut *stream).poll_write(cx, &request[written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            } else if !flushed {
                // TLS buffers records; a plain socket flushes at once.
                match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => flushed = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
                if flushed {
                    return Poll::Ready(Ok(true));
                }
            }
            // Blocked on writing: see whether the server has answered already.
            incoming.reserve(4 * 1024);
            return match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, incoming) {
                Poll::Ready(Ok(0)) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(written == request.len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
    })
    .await
}

/// Decodes a gzip body, refusing to grow past `max_body`.
fn gunzip(body: &[u8], max_body: u64) -> Result<Bytes, HttpError> {
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max_body.saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|e| HttpError::Protocol(format!("gzip body does not decode: {e}")))?;
    if decoded.len() as u64 > max_body {
        return Err(HttpError::Limit(format!(
            "gzip body decodes to more than --max-body ({max_body} bytes)"
        )));
    }
    Ok(Bytes::from(decoded))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Reads one request's head (and a body, if it has a Content-Length): its first line.
    async fn read_request(socket: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        socket.read_exact(&mut body).await.ok()?;
        head.lines().next().map(str::to_owned)
    }

    fn target(addrs: Vec<SocketAddr>) -> Rc<Target> {
        Rc::new(Target {
            scheme: "http",
            authority: addrs[addrs.len() - 1].to_string(),
            addrs,
            url: "http://test".into(),
            base_path: String::new(),
            tls: None,
            server_name: None,
        })
    }

    fn connection(addr: SocketAddr) -> Connection {
        Connection::new(target(vec![addr]), Options::default())
    }

    async fn get(c: &mut Connection, path: &str) -> Result<Answer, HttpError> {
        c.send(&Method::GET, path, &[], &Payload::default()).await
    }

    async fn post(c: &mut Connection, body: &'static [u8]) -> Result<Answer, HttpError> {
        let payload = Payload {
            content_type: None,
            bytes: Bytes::from_static(body),
        };
        c.send(&Method::POST, "/p", &[], &payload).await
    }

    async fn local<F: std::future::Future>(f: F) -> F::Output {
        tokio::task::LocalSet::new().run_until(f).await
    }

    /// Keep-alive reuse (after the buffers were given back), an answer split over reads, a chunked answer, an until-close answer,
    /// and the User-Agent.
    #[tokio::test]
    async fn speaks_http_1_1_on_a_real_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(
                request.starts_with("POST /p HTTP/1.1\r\nHost: "),
                "{request}"
            );
            assert!(request.contains(&format!(
                "\r\nUser-Agent: loadgen/{}\r\n",
                env!("CARGO_PKG_VERSION")
            )));
            assert!(
                request.ends_with("Content-Length: 4\r\n\r\nbody"),
                "{request}"
            );
            socket
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            read_request(&mut socket).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            socket.write_all(b"c\r\n0\r\n\r\n").await.unwrap();
            read_request(&mut socket).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                .await
                .unwrap();
        });
        local(async move {
            let mut c = connection(addr);
            let a = post(&mut c, b"body").await.unwrap();
            assert_eq!((a.status, &a.body[..], a.resent), (201, &b"ok"[..], false));
            assert!(a.timings.connect_us.is_some());
            // A user about to wait gives its buffers back; the connection stays open.
            c.release_buffers();
            let b = get(&mut c, "/b").await.unwrap();
            assert_eq!((b.status, &b.body[..]), (200, &b"abc"[..]));
            assert_eq!(b.timings.connect_us, None, "the connection was kept alive");
            let closed = get(&mut c, "/c").await.unwrap();
            assert_eq!(&closed.body[..], b"until close");
        })
        .await;
        server.await.unwrap();
    }

    /// A server that reads a request on a kept-alive connection, then closes it without a word
    /// (a worker killed by its server's timeout): a GET is sent once more and counted as
    /// resent; a POST is a failure and reaches the server once.
    #[tokio::test]
    async fn resends_only_idempotent_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server_seen = seen.clone();
        let server = tokio::spawn(async move {
            // Each connection: answer the first request, swallow the second, close.
            for _ in 0..2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                let first = read_request(&mut socket).await.unwrap();
                server_seen.lock().unwrap().push(first);
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                if let Some(second) = read_request(&mut socket).await {
                    server_seen.lock().unwrap().push(second);
                }
            }
        });
        local(async move {
            let mut c = connection(addr);
            get(&mut c, "/1").await.unwrap();
            let again = get(&mut c, "/2").await.unwrap();
            assert!(
                again.resent,
                "a GET on a dead kept-alive connection is sent again"
            );
            let error = post(&mut c, b"x").await.unwrap_err();
            assert!(
                error.to_string().contains("a POST is not sent again"),
                "{error}"
            );
        })
        .await;
        server.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "GET /1 HTTP/1.1",
                "GET /2 HTTP/1.1",
                "GET /2 HTTP/1.1",
                "POST /p HTTP/1.1"
            ]
        );
    }

    /// A GET resent after its kept-alive connection closed, whose second attempt meets a close
    /// too: the request fails, and its resend is counted all the same (issue 22: the server read
    /// 64 GETs, 43 were reported and "resent 0").
    #[tokio::test]
    async fn a_resend_that_fails_too_is_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let read = Arc::new(AtomicUsize::new(0));
        let server_read = read.clone();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_request(&mut socket).await.unwrap();
            server_read.fetch_add(1, Ordering::SeqCst);
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            read_request(&mut socket).await.unwrap();
            server_read.fetch_add(1, Ordering::SeqCst);
            drop(socket);
            let (mut socket, _) = listener.accept().await.unwrap();
            read_request(&mut socket).await.unwrap();
            server_read.fetch_add(1, Ordering::SeqCst);
        });
        local(async move {
            let mut c = connection(addr);
            let sends = c.sends();
            get(&mut c, "/1").await.unwrap();
            let error = get(&mut c, "/2").await.unwrap_err();
            assert!(error.to_string().contains("closed"), "{error}");
            assert_eq!(
                (sends.resent(), sends.written()),
                (1, 3),
                "the second attempt went out"
            );
        })
        .await;
        server.await.unwrap();
        assert_eq!(read.load(Ordering::SeqCst), 3);
    }

    /// Bytes after an answer, or an unsolicited 408 on an idle connection, close it: the next
    /// request gets its own answer on a new connection.
    #[tokio::test]
    async fn never_reads_stray_bytes_as_an_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let server_accepted = accepted.clone();
        let (idle_tx, idle_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            server_accepted.fetch_add(1, Ordering::SeqCst);
            read_request(&mut socket).await.unwrap();
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 500 Stray\r\n\r\n",
                )
                .await
                .unwrap();
            let (mut socket, _) = listener.accept().await.unwrap();
            server_accepted.fetch_add(1, Ordering::SeqCst);
            read_request(&mut socket).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
                .await
                .unwrap();
            socket
                .write_all(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let _ = idle_tx.send(());
            let (mut socket, _) = listener.accept().await.unwrap();
            server_accepted.fetch_add(1, Ordering::SeqCst);
            read_request(&mut socket).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc")
                .await
                .unwrap();
            let _ = read_request(&mut socket).await;
        });
        local(async move {
            let mut c = connection(addr);
            assert_eq!(&get(&mut c, "/").await.unwrap().body[..], b"a");
            assert_eq!(&get(&mut c, "/").await.unwrap().body[..], b"b");
            idle_rx.await.unwrap();
            // Let the 408 arrive (it was written before the signal).
            tokio::time::sleep(Duration::from_millis(50)).await;
            let third = get(&mut c, "/").await.unwrap();
            assert_eq!(
                (third.status, &third.body[..], third.resent),
                (200, &b"c"[..], false)
            );
        })
        .await;
        server.abort();
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// The timeout fires on an answer that never comes, and again after a request that was
    /// answered in time: the connection's one timer is re-armed each time.
    #[tokio::test]
    async fn times_out_each_request_that_gets_no_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    while let Some(line) = read_request(&mut socket).await {
                        if line.starts_with("GET /fast") {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                    }
                });
            }
        });
        local(async move {
            let options = Options {
                // Far above a loopback answer's time, even on a busy machine.
                timeout: Duration::from_millis(1500),
                ..Options::default()
            };
            let mut c = Connection::new(target(vec![addr]), options);
            for path in ["/slow", "/fast", "/fast", "/slow", "/fast"] {
                let result = get(&mut c, path).await;
                match path {
                    "/slow" => assert!(matches!(result, Err(HttpError::Timeout(_))), "{result:?}"),
                    _ => assert_eq!(result.unwrap().status, 200),
                }
            }
        })
        .await;
        server.abort();
    }

    /// A server that refuses an upload before reading it: its 413 is the answer recorded.
    #[tokio::test]
    async fn records_an_answer_sent_before_the_upload_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 1024];
            let _ = socket.read(&mut head).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
                .await
                .unwrap();
            // Keep the socket open without reading: the client's write stays blocked.
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        local(async move {
            let mut c = connection(addr);
            let upload = Payload {
                content_type: None,
                bytes: Bytes::from(vec![b'x'; 64 * 1024 * 1024]),
            };
            let answer = c
                .send(&Method::POST, "/upload", &[], &upload)
                .await
                .unwrap();
            assert_eq!((answer.status, &answer.body[..]), (413, &b"too big!"[..]));
        })
        .await;
        server.abort();
    }

    /// An endless body is cut at `--max-body` and named as a failure; a refused first address
    /// falls through to the next one.
    #[tokio::test]
    async fn limits_bodies_and_tries_every_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_request(&mut socket).await.unwrap();
            socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            let block = vec![b'x'; 64 * 1024];
            while socket.write_all(&block).await.is_ok() {}
        });
        local(async move {
            let options = Options {
                limits: Limits {
                    max_body: 1024 * 1024,
                },
                ..Options::default()
            };
            let mut c = Connection::new(target(vec![closed, addr]), options);
            let error = get(&mut c, "/endless").await.unwrap_err();
            assert!(matches!(error, HttpError::Limit(_)), "{error}");
            assert!(
                error.to_string().contains("--max-body (1048576 bytes)"),
                "{error}"
            );
        })
        .await;
        server.abort();
    }

    /// https with a certificate the system does not trust: refused by default, accepted with
    /// `--ca-cert` or `--insecure`; a user's reconnect resumes its TLS session.
    #[tokio::test]
    async fn speaks_tls_with_the_roots_given() {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let server_config = test_support::self_signed_tls(&ca_file);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resumed = Arc::new(AtomicUsize::new(0));
        let server_resumed = resumed.clone();
        let server = tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    continue;
                };
                if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    server_resumed.fetch_add(1, Ordering::SeqCst);
                }
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure",
                    )
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let url = format!("https://localhost:{port}");
        let settings = |ca_cert: Option<std::path::PathBuf>, insecure| super::super::TlsSettings {
            ca_cert,
            insecure,
        };
        local(async move {
            let untrusted = super::super::tls::client_config(&settings(None, false)).unwrap();
            let t = Target::resolve(&url, Some(&untrusted)).await.unwrap();
            let mut c = Connection::new(Rc::new(t), Options::default());
            let error = get(&mut c, "/").await.unwrap_err();
            assert!(matches!(error, HttpError::Tls(_)), "{error}");
            for settings in [settings(Some(ca_file.clone()), false), settings(None, true)] {
                let config = super::super::tls::client_config(&settings).unwrap();
                let t = Target::resolve(&url, Some(&config)).await.unwrap();
                let mut c = Connection::new(Rc::new(t), Options::default());
                for _ in 0..2 {
                    let answer = get(&mut c, "/").await.unwrap();
                    assert_eq!((answer.status, &answer.body[..]), (200, &b"secure"[..]));
                    assert!(answer.timings.tls_us.is_some());
                }
            }
        })
        .await;
        server.abort();
        assert!(
            resumed.load(Ordering::SeqCst) >= 2,
            "each user's second connection resumes"
        );
    }
}
