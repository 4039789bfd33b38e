//! A TLS client stream on rustls's unbuffered API, so that this module, not rustls, owns the
//! bytes in flight and an idle connection can give them back. rustls's buffered
//! `ClientConnection` (what tokio-rustls wraps) keeps a 4 KB read buffer for the connection's
//! whole life, even when empty: with thousands of users waiting seconds between requests, that
//! was half of what an idle https user cost (issue 31).
//!
//! The stream behaves as tokio-rustls's did for the connection above it: rustls's errors come
//! out as `InvalidData` with rustls's own words, the peer's `close_notify` is the end of the
//! stream, and an end of the socket without one is `UnexpectedEof`.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ClientConfig;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Room made for each read from the socket: a whole record of the largest size.
const READ_SIZE: usize = 16_384 + 2_048 + 5;
/// Received bytes held while rustls assembles them: a handshake message may take 64 KB
/// (rustls's own limit), and a record 16 KB plus its overhead.
const MAX_RECEIVED: usize = 0xffff + 16_384 + 2_048 + 5;
/// The most application data encrypted by one write: the socket takes it in one go or the
/// writer waits, so what is queued stays bounded.
const MAX_WRITE: usize = 64 * 1024;
/// Overhead of a TLS record beyond its payload, a first guess (a short buffer is grown).
const RECORD_OVERHEAD: usize = 64;

thread_local! {
    /// The buffer a connection reads into, one per thread and lent to whichever connection
    /// reads: a read completes within one poll, so a connection keeps only the bytes of a
    /// record that has not fully arrived (usually none). Thousands of users mid-request would
    /// otherwise hold a read buffer each.
    static READ_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A TLS client connection over TCP.
pub struct TlsStream {
    tcp: TcpStream,
    conn: UnbufferedClientConnection,
    /// Bytes read from the socket: `incoming[start..received]` are not processed yet. Between
    /// reads it holds those bytes alone; while reading, it is the thread's read buffer.
    incoming: Vec<u8>,
    start: usize,
    received: usize,
    /// Bytes for the socket: `outgoing[sent..]` are still to be written.
    outgoing: Vec<u8>,
    sent: usize,
    /// Decrypted bytes that the last read had no room for: `plaintext[taken..]`.
    plaintext: Vec<u8>,
    taken: usize,
    /// The peer's `close_notify` came: the end of its data.
    peer_closed: bool,
    /// The socket's end came (with or without `close_notify`).
    eof: bool,
    /// Our `close_notify` is queued (the stream is being shut down).
    close_notify_sent: bool,
}

/// Where processing the received bytes stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The handshake needs more bytes from the peer.
    Handshake,
    /// Connected: application data may be written, and more may be read.
    Ready,
    /// Both sides sent `close_notify`.
    Closed,
}

/// A rustls error as tokio-rustls reported it.
fn invalid_data(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl TlsStream {
    /// Performs the handshake on `tcp` with `config`, checking the server as `name`.
    pub async fn connect(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        tcp: TcpStream,
    ) -> io::Result<Self> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(invalid_data)?;
        let mut stream = Self {
            tcp,
            conn,
            incoming: Vec::new(),
            start: 0,
            received: 0,
            outgoing: Vec::new(),
            sent: 0,
            plaintext: Vec::new(),
            taken: 0,
            peer_closed: false,
            eof: false,
            close_notify_sent: false,
        };
        std::future::poll_fn(|cx| stream.with_read_buffer(|s| s.poll_handshake(cx))).await?;
        Ok(stream)
    }

    /// Gives back the buffers that hold nothing (a user about to wait calls it): the next read
    /// or write allocates them again.
    pub fn release_buffers(&mut self) {
        if self.start == self.received {
            self.incoming = Vec::new();
            (self.start, self.received) = (0, 0);
        }
        if self.sent == self.outgoing.len() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        if self.taken == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let next = match self.process(None, &[]) {
                Ok((next, _)) => next,
                Err(error) => return Poll::Ready(Err(self.last_gasp(cx, error))),
            };
            let flushed = self.poll_send(cx)?.is_ready();
            match next {
                Next::Ready if flushed => return Poll::Ready(Ok(())),
                Next::Ready => return Poll::Pending,
                Next::Closed => return Poll::Ready(Err(handshake_eof())),
                Next::Handshake if self.peer_closed || self.eof => {
                    return Poll::Ready(Err(handshake_eof()));
                }
                Next::Handshake => {}
            }
            if ready!(self.poll_receive(cx))? == 0 {
                self.eof = true;
            }
        }
    }

    /// Processes every complete record received so far: decrypted data goes to `out` as far as
    /// it has room, then to `self.plaintext`; handshake messages to send go to `outgoing`.
    /// Once connected, encrypts `app` into `outgoing` and says how much of it.
    fn process(
        &mut self,
        mut out: Option<&mut ReadBuf<'_>>,
        app: &[u8],
    ) -> io::Result<(Next, usize)> {
        loop {
            let UnbufferedStatus { discard, state } = self
                .conn
                .process_tls_records(&mut self.incoming[self.start..self.received]);
            let mut discard = discard;
            let mut encrypted = 0;
            let next = match state.map_err(invalid_data)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid_data)?;
                        discard += record.discard;
                        let payload = record.payload;
                        let direct = out.as_ref().map_or(0, |o| o.remaining().min(payload.len()));
                        if let Some(out) = out.as_deref_mut() {
                            out.put_slice(&payload[..direct]);
                        }
                        self.plaintext.extend_from_slice(&payload[direct..]);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.outgoing, &mut encode)?;
                    None
                }
                // Sent before this stream next waits for the peer (`poll_send`), which is all
                // rustls asks: the peer must have it before it can answer.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::WriteTraffic(mut write) if !app.is_empty() => {
                    let app = &app[..app.len().min(MAX_WRITE)];
                    encrypt_into(&mut self.outgoing, &mut write, app)?;
                    encrypted = app.len();
                    Some(Next::Ready)
                }
                ConnectionState::WriteTraffic(_) => Some(Next::Ready),
                ConnectionState::BlockedHandshake => Some(Next::Handshake),
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Next::Closed),
                // Early data is a server's state; rustls may add others.
                other => {
                    return Err(io::Error::other(format!("unexpected TLS state {other:?}")));
                }
            };
            self.start += discard;
            if let Some(next) = next {
                return Ok((next, encrypted));
            }
        }
    }

    /// Tries to tell the peer why the connection failed (rustls queued an alert), as
    /// tokio-rustls did; `error` is what the caller sees either way.
    fn last_gasp(&mut self, cx: &mut Context<'_>, error: io::Error) -> io::Error {
        let status = self
            .conn
            .process_tls_records(&mut self.incoming[self.start..self.received]);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state
            && encode_into(&mut self.outgoing, &mut encode).is_ok()
        {
            let _ = self.poll_send(cx);
        }
        error
    }

    /// Writes what is queued for the peer.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Runs `f` with the thread's read buffer as `incoming` (holding the bytes not processed
    /// yet), then keeps only those bytes and gives the buffer back.
    fn with_read_buffer<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let mut lent = READ_BUFFER.take();
        let pending = self.received - self.start;
        if lent.len() < pending + READ_SIZE {
            lent.resize(pending + READ_SIZE, 0);
        }
        lent[..pending].copy_from_slice(&self.incoming[self.start..self.received]);
        self.incoming = lent;
        (self.start, self.received) = (0, pending);
        let result = f(self);
        let own = self.incoming[self.start..self.received].to_vec();
        let lent = std::mem::replace(&mut self.incoming, own);
        (self.start, self.received) = (0, self.incoming.len());
        READ_BUFFER.set(lent);
        result
    }

    /// Reads from the socket after what is received; `0` at its end.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start > 0 {
            self.incoming.copy_within(self.start..self.received, 0);
            self.received -= self.start;
            self.start = 0;
        }
        if self.received >= MAX_RECEIVED {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS message buffer full",
            )));
        }
        if self.incoming.len() < self.received + READ_SIZE {
            self.incoming.resize(self.received + READ_SIZE, 0);
        }
        let mut buf = ReadBuf::new(&mut self.incoming[self.received..]);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        self.received += n;
        Poll::Ready(Ok(n))
    }

    /// Reads and decrypts until some data (or the end) comes.
    fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let before = buf.filled().len();
            let next = match self.process(Some(buf), &[]) {
                Ok((next, _)) => next,
                Err(error) => return Poll::Ready(Err(self.last_gasp(cx, error))),
            };
            // Handshake messages after the handshake (a key update) are answered now; if the
            // socket cannot take them yet, its write readiness wakes this reader too.
            let _ = self.poll_send(cx)?;
            if buf.filled().len() > before || self.peer_closed || next == Next::Closed {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
            match self.poll_receive(cx)? {
                Poll::Ready(0) => self.eof = true,
                Poll::Ready(_) => {}
                // Woken when the socket is readable (or writable, if sending waits).
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Copies decrypted bytes kept from an earlier read; whether there were any.
    fn take_plaintext(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.taken == self.plaintext.len() {
            return false;
        }
        let n = buf.remaining().min(self.plaintext.len() - self.taken);
        buf.put_slice(&self.plaintext[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext.clear();
            self.taken = 0;
        }
        true
    }
}

/// Appends a handshake message to `outgoing`.
fn encode_into(
    outgoing: &mut Vec<u8>,
    encode: &mut EncodeTlsData<'_, ClientConnectionData>,
) -> io::Result<()> {
    // An empty buffer first: rustls says the size the message needs, and no more is taken.
    let start = outgoing.len();
    loop {
        match encode.encode(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(short)) => {
                outgoing.resize(start + short.required_size, 0);
            }
            Err(e @ EncodeError::AlreadyEncoded) => {
                outgoing.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

/// Appends `app`, encrypted, to `outgoing`.
fn encrypt_into(
    outgoing: &mut Vec<u8>,
    write: &mut WriteTraffic<'_, ClientConnectionData>,
    app: &[u8],
) -> io::Result<()> {
    let start = outgoing.len();
    let records = app.len() / 16_384 + 1;
    outgoing.resize(start + app.len() + records * RECORD_OVERHEAD, 0);
    loop {
        match write.encrypt(app, &mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(short)) => {
                outgoing.resize(start + short.required_size, 0);
            }
            Err(e @ EncryptError::EncryptExhausted) => {
                outgoing.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

fn handshake_eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof")
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.take_plaintext(buf) {
            return Poll::Ready(Ok(()));
        }
        this.with_read_buffer(|this| this.poll_read_records(cx, buf))
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What is queued goes first: the writer waits while the socket does not take it.
        ready!(this.poll_send(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (next, n) = this.process(None, buf)?;
        if next != Next::Ready || n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS connection is closed",
            )));
        }
        // Sent now if the socket takes it, else by the next write or flush.
        let _ = this.poll_send(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        if !this.close_notify_sent {
            this.close_notify_sent = true;
            let status = this
                .conn
                .process_tls_records(&mut this.incoming[this.start..this.received]);
            if let Ok(ConnectionState::WriteTraffic(mut write)) = status.state {
                let mut alert = [0; 64];
                if let Ok(n) = write.queue_close_notify(&mut alert) {
                    this.outgoing.extend_from_slice(&alert[..n]);
                }
            }
            ready!(this.poll_send(cx))?;
        }
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            // Not being connected any more is shut down enough.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::http::tls::{TlsSettings, client_config};

    /// A server for `localhost` speaking only `version`; its certificate written to `ca_file`.
    fn server_config(
        ca_file: &Path,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<rustls::ServerConfig> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(ca_file, certified.cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(certified.cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    certified.signing_key.serialize_der(),
                )),
            )
            .unwrap();
        Arc::new(config)
    }

    /// A server that runs `serve` on its first connection, and a client stream to it.
    /// With `trickle`, the server's bytes reach the client in pieces of 700 bytes, 1 ms apart:
    /// records and handshake messages arrive across several reads.
    async fn pair<F, Fut>(
        version: &'static rustls::SupportedProtocolVersion,
        trickle: bool,
        serve: F,
    ) -> TlsStream
    where
        F: FnOnce(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&ca_file, version));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            serve(acceptor.accept(socket).await.unwrap()).await;
        });
        let settings = TlsSettings {
            ca_cert: Some(ca_file),
            insecure: false,
        };
        let config = client_config(&settings).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let addr = if trickle {
            trickling_relay(addr).await
        } else {
            addr
        };
        TlsStream::connect(config, name, TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap()
    }

    /// A relay to `server` that passes what the server sends 700 bytes at a time.
    async fn trickling_relay(server: std::net::SocketAddr) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let upstream = TcpStream::connect(server).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut upstream_read, mut upstream_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
                let _ = upstream_write.shutdown().await;
            });
            let mut piece = [0u8; 700];
            loop {
                let n = upstream_read.read(&mut piece).await.unwrap_or(0);
                if n == 0 || client_write.write_all(&piece[..n]).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let _ = client_write.shutdown().await;
        });
        addr
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Reads exactly `n` bytes in small reads, as a reader with little room does.
    async fn read_in_small_reads(stream: &mut TlsStream, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        while got.len() < n {
            let read = stream.read(&mut buf).await.unwrap();
            assert_ne!(read, 0, "the stream ended after {} bytes", got.len());
            got.extend_from_slice(&buf[..read]);
        }
        got
    }

    /// Records larger than the reader's buffer, both ways, over TLS 1.2 and 1.3, whole or
    /// arriving in pieces; the buffers given back between exchanges; the peer's `close_notify`
    /// is the end of the stream.
    #[tokio::test]
    async fn carries_large_records_both_ways_and_gives_its_buffers_back() {
        let cases = [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .flat_map(|version| [(version, false), (version, true)]);
        for (version, trickle) in cases {
            let mut client = pair(version, trickle, |mut tls| async move {
                for _ in 0..2 {
                    let mut request = vec![0u8; 100_000];
                    tls.read_exact(&mut request).await.unwrap();
                    assert_eq!(request, body(100_000));
                    tls.write_all(&body(40_000)).await.unwrap();
                }
                tls.shutdown().await.unwrap();
            })
            .await;
            for _ in 0..2 {
                client.write_all(&body(100_000)).await.unwrap();
                client.flush().await.unwrap();
                assert_eq!(read_in_small_reads(&mut client, 40_000).await, body(40_000));
                client.release_buffers();
                assert_eq!(
                    (client.incoming.capacity(), client.outgoing.capacity()),
                    (0, 0)
                );
                assert_eq!(client.plaintext.capacity(), 0);
            }
            let mut rest = Vec::new();
            assert_eq!(
                client.read_to_end(&mut rest).await.unwrap(),
                0,
                "{version:?}"
            );
        }
    }

    /// A socket that ends without `close_notify` is not a clean end (tokio-rustls's wording).
    #[tokio::test]
    async fn an_end_without_close_notify_is_unexpected() {
        let mut client = pair(&rustls::version::TLS13, false, |tls| async move {
            drop(tls.into_inner().0);
        })
        .await;
        let error = client.read(&mut [0u8; 100]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }

    /// A certificate that is not trusted fails the handshake in rustls's words.
    #[tokio::test]
    async fn an_untrusted_certificate_fails_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(
            &dir.path().join("served.pem"),
            &rustls::version::TLS13,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            acceptor.accept(socket).await.map(|_| ())
        });
        // Another self-signed certificate is the only one trusted.
        let other = dir.path().join("other.pem");
        server_config(&other, &rustls::version::TLS13);
        let settings = TlsSettings {
            ca_cert: Some(other),
            insecure: false,
        };
        let config = client_config(&settings).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let Err(error) = TlsStream::connect(config, name, tcp).await else {
            panic!("an untrusted certificate was accepted");
        };
        assert!(
            error.to_string().contains("invalid peer certificate"),
            "{error}"
        );
        // The server heard why (the alert the client sent).
        let refused = server.await.unwrap().unwrap_err();
        assert!(
            refused.to_string().contains("UnknownCA")
                || refused.to_string().contains("received fatal alert"),
            "{refused}"
        );
    }
}
