//! The master's first exchange with whoever connects, before it knows them to be a worker:
//! the WebSocket handshake, then the hello, read under limits sized for a hello, not for a
//! worker's figures. tungstenite reserves a frame's announced length as soon as it reads the
//! frame's header, so with its defaults (16 MiB frames) forty connections that announce 15 MiB
//! each held 600 MB of a master that had not checked a single token. Only a worker that passed
//! the checks (protocol, version, token) gets the larger limits its snapshots need.
//!
//! The worker's name is printed and kept in reports: it is made printable and short here, once.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::protocol::{self, PROTOCOL, Resume, ToMaster, ToWorker, VERSION};
use super::tls::Io;

/// The largest hello frame or message, bytes: a hello holds a name, a version and a token.
pub const HELLO_MAX_BYTES: usize = 16 << 10;
/// The largest frame from a worker that passed the checks, bytes (tungstenite's default).
pub const FRAME_MAX_BYTES: usize = 16 << 20;
/// The largest message from a worker that passed the checks, bytes (tungstenite's default): a
/// snapshot carries a histogram per endpoint.
pub const MESSAGE_MAX_BYTES: usize = 64 << 20;
/// The longest worker name kept, in characters.
pub const NAME_MAX_CHARS: usize = 64;

/// A connection whose worker passed the checks.
pub type Socket = WebSocketStream<Box<dyn Io>>;

/// A worker that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its name, printable and at most [`NAME_MAX_CHARS`] long.
    pub name: String,
    /// Its cores.
    pub cores: usize,
    /// The run it comes back to.
    pub resume: Option<Resume>,
}

/// How a first exchange ended without a worker.
#[derive(Debug)]
pub enum Rejected {
    /// A loadgen worker that cannot join, told why (the master prints it).
    Refused(String),
    /// Not a loadgen worker, or gone (too large, malformed, closed, slow): dropped quietly.
    Dropped(String),
}

/// The limits until the hello is accepted.
fn before_hello() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(HELLO_MAX_BYTES))
        .max_message_size(Some(HELLO_MAX_BYTES))
}

/// The limits for a worker that passed the checks.
fn after_hello() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(FRAME_MAX_BYTES))
        .max_message_size(Some(MESSAGE_MAX_BYTES))
}

/// Runs the WebSocket handshake on `stream` and reads the hello under [`HELLO_MAX_BYTES`];
/// a worker that passes the checks gets its connection back with the larger limits. The
/// caller bounds the time it takes.
pub async fn handshake(
    stream: Box<dyn Io>,
    token: Option<&str>,
) -> Result<(Socket, Accepted), Rejected> {
    let mut socket =
        tokio_tungstenite::accept_async_with_config(Handover(Some(stream)), Some(before_hello()))
            .await
            .map_err(|e| Rejected::Dropped(format!("not a WebSocket client: {e}")))?;
    let text = match socket.next().await {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(other)) => {
            let kind = match other {
                Message::Binary(_) => "a binary frame",
                Message::Close(_) => "a close",
                _ => "a control frame",
            };
            return Err(Rejected::Dropped(format!("expected a hello, got {kind}")));
        }
        Some(Err(error)) => return Err(Rejected::Dropped(error.to_string())),
        None => return Err(Rejected::Dropped("closed before its hello".into())),
    };
    let accepted = match read(text.as_str(), token) {
        Ok(accepted) => accepted,
        Err(Rejected::Refused(reason)) => {
            let refusal = protocol::encode(&ToWorker::Refused {
                reason: reason.clone(),
            });
            let _ = socket.send(Message::text(refusal)).await;
            let _ = socket.close(None).await;
            return Err(Rejected::Refused(reason));
        }
        Err(dropped) => return Err(dropped),
    };
    // A worker says nothing between its hello and the master's welcome (see `protocol`), so
    // no byte of it waits in the first socket's buffer: the stream carries on as it is.
    let Some(stream) = socket.get_mut().0.take() else {
        return Err(Rejected::Dropped(
            "the connection was handed over twice".into(),
        ));
    };
    let socket = WebSocketStream::from_raw_socket(stream, Role::Server, Some(after_hello())).await;
    Ok((socket, accepted))
}

/// Reads a hello's text: a worker of this protocol and version with the right token, its name
/// made printable; or why not.
pub fn read(text: &str, token: Option<&str>) -> Result<Accepted, Rejected> {
    if text.len() > HELLO_MAX_BYTES {
        return Err(Rejected::Dropped(format!(
            "a hello of {} bytes (at most {HELLO_MAX_BYTES})",
            text.len()
        )));
    }
    let hello = protocol::decode::<ToMaster>(text).map_err(|e| Rejected::Dropped(printable(&e)))?;
    let ToMaster::Hello {
        protocol,
        version,
        name,
        cores,
        token: given,
        resume,
    } = hello
    else {
        return Err(Rejected::Refused(
            "its first message was not a hello".into(),
        ));
    };
    let name = printable_name(&name);
    let version = printable(&version);
    if protocol != PROTOCOL || version != VERSION {
        return Err(Rejected::Refused(format!(
            "worker {name} runs loadgen {version} (protocol {protocol}); this master runs \
             {VERSION} (protocol {PROTOCOL}): run the same version everywhere"
        )));
    }
    match (token, given.as_deref()) {
        (Some(expected), Some(given)) if constant_time_eq(expected, given) => {}
        (Some(_), Some(_)) => {
            return Err(Rejected::Refused(format!(
                "worker {name} gave a wrong --cluster-token: give it the master's"
            )));
        }
        (Some(_), None) => {
            return Err(Rejected::Refused(format!(
                "worker {name} gave no --cluster-token, and this master requires one"
            )));
        }
        (None, _) => {}
    }
    Ok(Accepted {
        name,
        cores,
        resume,
    })
}

/// A worker's name as the master prints and keeps it: no control character (an escape
/// sequence would rewrite the operator's terminal), at most [`NAME_MAX_CHARS`] characters, and
/// never empty.
pub fn printable_name(raw: &str) -> String {
    let mut name = printable(raw);
    if name.chars().count() > NAME_MAX_CHARS {
        name = name.chars().take(NAME_MAX_CHARS - 1).collect();
        name.push('…');
    }
    if name.trim().is_empty() {
        return "unnamed".into();
    }
    name
}

/// `text` without control characters, and at most 200 characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Compares secrets in a time that does not tell how much of them matched.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The connection's stream, lent to the first socket and taken back from it once the hello
/// is accepted (tokio-tungstenite cannot change a socket's limits in place).
struct Handover(Option<Box<dyn Io>>);

fn handed_over() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "handed over")
}

impl AsyncRead for Handover {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stream) => Pin::new(stream).poll_read(cx, buf),
            None => Poll::Ready(Err(handed_over())),
        }
    }
}

impl AsyncWrite for Handover {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(stream) => Pin::new(stream).poll_write(cx, buf),
            None => Poll::Ready(Err(handed_over())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stream) => Pin::new(stream).poll_flush(cx),
            None => Poll::Ready(Err(handed_over())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            None => Poll::Ready(Err(handed_over())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: &str, name: &str, token: Option<&str>) -> String {
        protocol::encode(&ToMaster::Hello {
            protocol: PROTOCOL,
            version: version.into(),
            name: name.into(),
            cores: 2,
            token: token.map(str::to_owned),
            resume: None,
        })
    }

    fn refused(result: Result<Accepted, Rejected>) -> String {
        match result {
            Err(Rejected::Refused(reason)) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn versions_and_tokens_are_checked() {
        assert!(read(&hello(VERSION, "w1", None), None).is_ok());
        assert!(read(&hello(VERSION, "w1", Some("s3cret")), Some("s3cret")).is_ok());
        let wrong = refused(read(&hello(VERSION, "w1", Some("nope")), Some("s3cret")));
        assert!(wrong.contains("wrong --cluster-token"), "{wrong}");
        assert!(!wrong.contains("s3cret"));
        let none = refused(read(&hello(VERSION, "w1", None), Some("s3cret")));
        assert!(none.contains("requires one"), "{none}");
        let old = refused(read(&hello("0.0.1", "w1", None), None));
        assert!(old.contains("0.0.1") && old.contains(VERSION), "{old}");
    }

    #[test]
    fn names_are_printable_short_and_never_empty() {
        let accepted = read(&hello(VERSION, "\u{1b}[31mred\u{1b}[0m\r\nw", None), None).unwrap();
        assert_eq!(accepted.name, "[31mred[0mw");
        let long = read(&hello(VERSION, &"n".repeat(5000), None), None).unwrap();
        assert_eq!(long.name.chars().count(), NAME_MAX_CHARS);
        assert!(long.name.ends_with('…'));
        assert_eq!(printable_name(" \t\u{1b}"), "unnamed");
        // Refusals print the name too: made printable first.
        let old = refused(read(
            &hello("0.0.1\u{7}", "\u{1b}]0;owned\u{7}", None),
            None,
        ));
        assert!(!old.chars().any(char::is_control), "{old:?}");
    }

    #[test]
    fn a_hello_larger_than_a_hello_is_dropped() {
        let huge = hello(VERSION, &"n".repeat(HELLO_MAX_BYTES), None);
        assert!(matches!(read(&huge, None), Err(Rejected::Dropped(_))));
    }
}
