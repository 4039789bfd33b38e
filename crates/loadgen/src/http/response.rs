//! Reading one answer as its bytes arrive: the head, then the body framed as RFC 9112 §6.3
//! says. The reader keeps its place between reads, so an answer split anywhere, in any number
//! of pieces, gives the same result, and no byte is looked at twice (chunked bodies included).

use bytes::{Buf, Bytes, BytesMut};

use super::HttpError;

/// The most bytes an answer's status line and headers may take.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields an answer may have.
pub const MAX_HEADERS: usize = 100;
/// The default for `--max-body`.
pub const DEFAULT_MAX_BODY: u64 = 64 * 1024 * 1024;

/// What an answer may weigh before it is a failure instead of a memory leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Body bytes, after decoding.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// A complete final answer, as framed on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code (never 1xx).
    pub status: u16,
    /// The body, as sent (still gzip-encoded if `gzip`).
    pub body: Bytes,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// The `Location` header, for redirects.
    pub location: Option<String>,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// `Set-Cookie` values, for the user's cookie jar.
    pub set_cookies: Vec<String>,
}

/// How the end of a body is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    location: Option<String>,
    gzip: bool,
    set_cookies: Vec<String>,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What one step of chunked decoding reached.
enum ChunkStep {
    Next(Chunk),
    NeedMore,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// Reads one answer to one request.
#[derive(Debug)]
pub struct Reader {
    is_head_request: bool,
    limits: Limits,
    state: State,
    head: Option<Head>,
    body: BytesMut,
}

impl Reader {
    /// A reader for the answer to a request; `HEAD` answers have no body.
    pub fn new(is_head_request: bool, limits: Limits) -> Self {
        Self {
            is_head_request,
            limits,
            state: State::Head,
            head: None,
            body: BytesMut::new(),
        }
    }

    /// Takes from `input` what belongs to the answer; the answer once it is complete. Bytes
    /// after it stay in `input`.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<Response>, HttpError> {
        loop {
            match self.state {
                State::Head => {
                    let Some((head, used)) = parse_head(input, self.is_head_request)? else {
                        if input.len() > MAX_HEAD_BYTES {
                            return Err(head_too_large());
                        }
                        return Ok(None);
                    };
                    input.advance(used);
                    match head.status {
                        101 => {
                            return Err(HttpError::Protocol(
                                "101 Switching Protocols: the server left HTTP".into(),
                            ));
                        }
                        // Interim answers: the final one follows.
                        100..=199 => continue,
                        _ => {}
                    }
                    self.state = match head.framing {
                        Framing::None => {
                            self.head = Some(head);
                            return Ok(Some(self.finish()));
                        }
                        Framing::Length(length) => {
                            self.check_body(length)?;
                            State::Length(length)
                        }
                        Framing::Chunked => State::Chunked(Chunk::Size),
                        Framing::UntilClose => State::UntilClose,
                    };
                    self.head = Some(head);
                }
                State::Length(length) => {
                    // Checked against the limit, so it fits in memory and in usize.
                    let length = usize::try_from(length).map_err(|_| body_too_large(length))?;
                    if input.len() < length {
                        return Ok(None);
                    }
                    self.body = input.split_to(length);
                    return Ok(Some(self.finish()));
                }
                State::Chunked(chunk) => match self.feed_chunked(chunk, input)? {
                    ChunkStep::Next(next) => self.state = State::Chunked(next),
                    ChunkStep::NeedMore => return Ok(None),
                    ChunkStep::Done => return Ok(Some(self.finish())),
                },
                State::UntilClose => {
                    if !input.is_empty() {
                        self.check_body(self.body.len() as u64 + input.len() as u64)?;
                        self.body.unsplit(input.split());
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The connection closed: the answer, if its body ends at the close.
    pub fn end_of_stream(&mut self) -> Result<Response, HttpError> {
        match self.state {
            State::UntilClose => Ok(self.finish()),
            State::Head => Err(HttpError::Connection(
                "connection closed in the middle of the answer's head".into(),
            )),
            _ => Err(HttpError::Connection(
                "connection closed in the middle of the answer's body".into(),
            )),
        }
    }

    /// One step of chunked decoding.
    fn feed_chunked(&mut self, chunk: Chunk, input: &mut BytesMut) -> Result<ChunkStep, HttpError> {
        match chunk {
            Chunk::Size => match httparse::parse_chunk_size(input) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    input.advance(used);
                    Ok(ChunkStep::Next(Chunk::Trailers))
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    let total = (self.body.len() as u64)
                        .checked_add(size)
                        .ok_or_else(|| body_too_large(size))?;
                    self.check_body(total)?;
                    input.advance(used);
                    Ok(ChunkStep::Next(Chunk::Data(size)))
                }
                Ok(httparse::Status::Partial) if input.len() > MAX_HEAD_BYTES => Err(
                    HttpError::Protocol("a chunk-size line longer than 64 KiB".into()),
                ),
                Ok(httparse::Status::Partial) => Ok(ChunkStep::NeedMore),
                Err(_) => Err(HttpError::Protocol(
                    "malformed chunked body: bad chunk size".into(),
                )),
            },
            Chunk::Data(left) => {
                if input.is_empty() {
                    return Ok(ChunkStep::NeedMore);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                self.body.extend_from_slice(&input[..take]);
                input.advance(take);
                let left = left - take as u64;
                Ok(ChunkStep::Next(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                }))
            }
            Chunk::DataEnd => {
                if input.len() < 2 {
                    return Ok(ChunkStep::NeedMore);
                }
                if &input[..2] != b"\r\n" {
                    return Err(HttpError::Protocol(
                        "malformed chunked body: a chunk's data is not followed by CRLF".into(),
                    ));
                }
                input.advance(2);
                Ok(ChunkStep::Next(Chunk::Size))
            }
            Chunk::Trailers => {
                // Trailer fields are ignored; the section ends with an empty line.
                let end = if input.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    input
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|at| at + 4)
                };
                match end {
                    Some(end) => {
                        input.advance(end);
                        Ok(ChunkStep::Done)
                    }
                    None if input.len() > MAX_HEAD_BYTES => {
                        Err(HttpError::Limit("trailer fields larger than 64 KiB".into()))
                    }
                    None => Ok(ChunkStep::NeedMore),
                }
            }
        }
    }

    fn check_body(&self, length: u64) -> Result<(), HttpError> {
        if length > self.limits.max_body {
            return Err(HttpError::Limit(format!(
                "body of {length} bytes or more is over --max-body ({} bytes)",
                self.limits.max_body
            )));
        }
        Ok(())
    }

    fn finish(&mut self) -> Response {
        let mut head = self.head.take();
        self.state = State::Head;
        Response {
            set_cookies: head
                .as_mut()
                .map(|h| std::mem::take(&mut h.set_cookies))
                .unwrap_or_default(),
            status: head.as_ref().map_or(0, |h| h.status),
            body: std::mem::take(&mut self.body).freeze(),
            keep_alive: head.as_ref().is_some_and(|h| h.keep_alive),
            location: head.as_ref().and_then(|h| h.location.clone()),
            gzip: head.as_ref().is_some_and(|h| h.gzip),
        }
    }
}

fn head_too_large() -> HttpError {
    HttpError::Limit(format!(
        "answer head larger than {} KiB",
        MAX_HEAD_BYTES / 1024
    ))
}

fn body_too_large(length: u64) -> HttpError {
    HttpError::Limit(format!("body length {length} cannot be held in memory"))
}

/// Comma-separated tokens of a header value, trimmed (compare them ignoring ASCII case).
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Parses the head at the start of `buf`: `None` until it is complete.
fn parse_head(buf: &[u8], is_head_request: bool) -> Result<Option<(Head, usize)>, HttpError> {
    // Uninitialised slots: initialising 100 headers on every read showed in profiles.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let used = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::Limit(format!(
                "answer with more than {MAX_HEADERS} header fields"
            )));
        }
        Err(e) => {
            return Err(HttpError::Protocol(format!("malformed answer head: {e}")));
        }
    };
    if used > MAX_HEAD_BYTES {
        return Err(head_too_large());
    }
    let status = response.code.unwrap_or(0);
    let fields = Fields::read(response.headers)?;
    let no_body = is_head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let (framing, keep_alive) = fields.framing(no_body, response.version == Some(1));
    Ok(Some((
        Head {
            status,
            framing,
            keep_alive,
            location: fields.location,
            gzip: fields.gzip,
            set_cookies: fields.set_cookies,
        },
        used,
    )))
}

/// What the framing, the connection and the user take from an answer's header fields.
#[derive(Default)]
struct Fields<'b> {
    content_length: Option<u64>,
    // Only the last coding decides the framing; whether there was any at all matters too.
    last_coding: Option<&'b [u8]>,
    close: bool,
    keep_alive_token: bool,
    location: Option<String>,
    gzip: bool,
    set_cookies: Vec<String>,
}

impl<'b> Fields<'b> {
    /// Reads every header field, refusing a malformed or conflicting Content-Length.
    fn read(headers: &[httparse::Header<'b>]) -> Result<Self, HttpError> {
        let mut fields = Self::default();
        for header in headers {
            fields.add(header)?;
        }
        Ok(fields)
    }

    fn add(&mut self, header: &httparse::Header<'b>) -> Result<(), HttpError> {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            for value in header.value.split(|&b| b == b',') {
                self.add_content_length(value)?;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if let Some(last) = tokens(header.value).last() {
                self.last_coding = Some(last);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("location") {
            self.location = Some(String::from_utf8_lossy(header.value).trim().to_owned());
        } else if name.eq_ignore_ascii_case("set-cookie") {
            self.set_cookies
                .push(String::from_utf8_lossy(header.value).into_owned());
        } else if name.eq_ignore_ascii_case("content-encoding") {
            self.gzip = tokens(header.value).last().is_some_and(|t| {
                t.eq_ignore_ascii_case(b"gzip") || t.eq_ignore_ascii_case(b"x-gzip")
            });
        }
        Ok(())
    }

    /// One Content-Length value: digits only, within 64 bits, equal to any earlier one.
    fn add_content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        let text = String::from_utf8_lossy(value);
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Protocol(format!(
                "malformed Content-Length {text:?}"
            )));
        }
        let length = text.parse::<u64>().map_err(|_| {
            HttpError::Protocol(format!("Content-Length {text} does not fit in 64 bits"))
        })?;
        match self.content_length {
            Some(earlier) if earlier != length => Err(HttpError::Protocol(format!(
                "conflicting Content-Length values {earlier} and {length}"
            ))),
            _ => {
                self.content_length = Some(length);
                Ok(())
            }
        }
    }

    /// How the body is framed, and whether the connection may carry another request after it
    /// (`http_1_1`: kept alive unless told otherwise).
    fn framing(&self, no_body: bool, http_1_1: bool) -> (Framing, bool) {
        let mut keep_alive = !self.close && (http_1_1 || self.keep_alive_token);
        let framing = if no_body {
            Framing::None
        } else if let Some(last) = self.last_coding {
            // Transfer-Encoding overrides Content-Length; a message with both may be an attempt
            // at request smuggling, so the connection is not used again.
            if self.content_length.is_some() {
                keep_alive = false;
            }
            if last.eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                keep_alive = false;
                Framing::UntilClose
            }
        } else if let Some(length) = self.content_length {
            Framing::Length(length)
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
        (framing, keep_alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(answer: &[u8], is_head: bool) -> Result<(Response, Vec<u8>), HttpError> {
        read_in_pieces(&[answer], is_head)
    }

    /// Feeds `pieces` one after the other, then the end of the stream.
    fn read_in_pieces(pieces: &[&[u8]], is_head: bool) -> Result<(Response, Vec<u8>), HttpError> {
        let mut reader = Reader::new(is_head, Limits { max_body: 1000 });
        let mut input = BytesMut::new();
        for (i, piece) in pieces.iter().enumerate() {
            input.extend_from_slice(piece);
            if let Some(response) = reader.feed(&mut input)? {
                // What follows the answer is left for the next one.
                pieces[i + 1..]
                    .iter()
                    .for_each(|p| input.extend_from_slice(p));
                return Ok((response, input.to_vec()));
            }
        }
        Ok((reader.end_of_stream()?, input.to_vec()))
    }

    fn status_and_body(answer: &[u8]) -> (u16, Vec<u8>, bool) {
        let (r, _) = read_all(answer, false).unwrap();
        (r.status, r.body.to_vec(), r.keep_alive)
    }

    fn protocol_error(answer: &[u8]) -> String {
        match read_all(answer, false) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    /// The corpus the split test runs over: every framing, interim answers, trailers, and
    /// answers that must fail.
    const CORPUS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nuntil close, not 3",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"garbage\r\n\r\n",
    ];

    /// Every answer of the corpus, split at every byte boundary (and fed byte by byte), reads
    /// to the same result as in one piece.
    #[test]
    fn any_split_reads_the_same() {
        for answer in CORPUS {
            let whole = format!("{:?}", read_all(answer, false));
            for at in 0..=answer.len() {
                let split = format!(
                    "{:?}",
                    read_in_pieces(&[&answer[..at], &answer[at..]], false)
                );
                assert_eq!(
                    split,
                    whole,
                    "{:?} split at {at}",
                    String::from_utf8_lossy(answer)
                );
            }
            let bytes: Vec<&[u8]> = answer.chunks(1).collect();
            assert_eq!(format!("{:?}", read_in_pieces(&bytes, false)), whole);
        }
    }

    #[test]
    fn frames_bodies_as_rfc_9112_says() {
        let (r, rest) = read_all(CORPUS[0], false).unwrap();
        assert_eq!(
            (r.status, &r.body[..], r.keep_alive, &rest[..]),
            (200, &b"hello"[..], true, &b"NEXT"[..])
        );
        let (r, rest) = read_all(CORPUS[1], false).unwrap();
        assert_eq!(
            (&r.body[..], &rest[..]),
            (&b"hello world"[..], &b"NEXT"[..])
        );
        assert_eq!(
            status_and_body(CORPUS[2]),
            (200, b"abc".to_vec(), true),
            "trailers"
        );
        assert_eq!(
            status_and_body(CORPUS[3]),
            (201, b"ok".to_vec(), true),
            "1xx skipped"
        );
        assert_eq!(
            status_and_body(CORPUS[4]),
            (200, b"until the end".to_vec(), false)
        );
        assert_eq!(
            status_and_body(CORPUS[5]),
            (200, b"until close, not 3".to_vec(), false),
            "another coding last: until close, and Transfer-Encoding beats Content-Length"
        );
        assert_eq!(status_and_body(CORPUS[6]), (204, vec![], true));
        assert_eq!(status_and_body(CORPUS[7]), (304, vec![], true));
        assert_eq!(
            status_and_body(CORPUS[8]),
            (200, b"hello".to_vec(), true),
            "equal lengths"
        );
        let (r, _) = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0), "HEAD has no body");
        let chunked_and_length =
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";
        assert_eq!(
            status_and_body(chunked_and_length),
            (200, b"a".to_vec(), false)
        );
        let tokens = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, closed-thing\r\nTransfer-Encoding: notchunked\r\n\r\nx";
        assert_eq!(
            status_and_body(tokens),
            (200, b"x".to_vec(), false),
            "tokens, not substrings"
        );
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(
            !status_and_body(http10).2,
            "HTTP/1.0 closes unless told otherwise"
        );
        let http10_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert!(status_and_body(http10_kept).2);
    }

    #[test]
    fn refuses_what_breaks_the_framing_or_the_limits() {
        assert!(protocol_error(CORPUS[9]).contains("conflicting Content-Length values 5 and 6"));
        assert!(protocol_error(CORPUS[10]).contains("--max-body"));
        assert!(protocol_error(CORPUS[11]).contains("does not fit in 64 bits"));
        assert!(protocol_error(CORPUS[12]).contains("--max-body"));
        assert!(protocol_error(CORPUS[13]).contains("not followed by CRLF"));
        assert!(protocol_error(CORPUS[14]).contains("101"));
        assert!(protocol_error(CORPUS[15]).contains("closed in the middle of the answer's body"));
        assert!(protocol_error(CORPUS[16]).contains("malformed"));
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        let answer = format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 0\r\n\r\n");
        assert!(protocol_error(answer.as_bytes()).contains("more than 100 header fields"));
        let answer = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(70_000));
        assert!(protocol_error(answer.as_bytes()).contains("head larger than 64 KiB"));
        let endless = format!("HTTP/1.1 200 OK\r\n\r\n{}", "a".repeat(2000));
        assert!(protocol_error(endless.as_bytes()).contains("--max-body"));
        let big_chunks = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "200\r\n".to_owned() + &"a".repeat(512) + "\r\n200\r\n" + &"a".repeat(512) + "\r\n"
        );
        assert!(protocol_error(big_chunks.as_bytes()).contains("--max-body"));
    }
}
