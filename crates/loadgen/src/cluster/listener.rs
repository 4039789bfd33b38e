//! The master's side of the connections: accepts WebSocket connections, checks each worker's
//! hello (protocol, version, token), then turns every connection into [`Event`]s for the
//! master and an outbox the master writes [`ToWorker`] messages to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{self, PROTOCOL, Resume, ToMaster, ToWorker, VERSION};
use super::tls;

/// A worker's hello took longer than this: not a worker.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connections tell the master.
#[derive(Debug)]
pub enum Event {
    /// A worker said hello and passed the checks; `outbox` reaches it.
    Hello {
        /// The connection.
        conn: u64,
        /// Its name.
        name: String,
        /// Its cores.
        cores: usize,
        /// The run it comes back to.
        resume: Option<Resume>,
        /// Messages to it.
        outbox: mpsc::UnboundedSender<ToWorker>,
    },
    /// A message from a worker.
    Message {
        /// The connection.
        conn: u64,
        /// The message.
        message: ToMaster,
    },
    /// The connection closed.
    Left {
        /// The connection.
        conn: u64,
        /// Why.
        why: String,
    },
}

/// Accepts connections on `listener` (over TLS when `tls` is given) until the receiver of
/// `events` is gone.
pub fn spawn_accept_loop(
    listener: TcpListener,
    token: Option<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
    events: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        let mut next_conn = 0u64;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: try again shortly.
                    tracing::warn!("master: cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if events.is_closed() {
                return;
            }
            next_conn += 1;
            tokio::spawn(serve(
                stream,
                peer,
                next_conn,
                token.clone(),
                tls.clone(),
                events.clone(),
            ));
        }
    });
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    conn: u64,
    token: Option<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let _ = stream.set_nodelay(true);
    let handshakes = async {
        let stream = tls::accept(stream, tls.as_ref()).await.map_err(|e| {
            // A worker without --master-tls, or one that does not trust our certificate.
            eprintln!("loadgen: master: TLS handshake with {peer} failed: {e}");
        })?;
        tokio_tungstenite::accept_async(stream).await.map_err(|e| {
            tracing::debug!("master: {peer} is not a WebSocket client: {e}");
        })
    };
    let Ok(Ok(socket)) = tokio::time::timeout(HELLO_TIMEOUT, handshakes).await else {
        return;
    };
    let (mut sink, mut incoming) = socket.split();
    let hello = tokio::time::timeout(HELLO_TIMEOUT, incoming.next()).await;
    let hello = match hello {
        Ok(Some(Ok(Message::Text(text)))) => protocol::decode::<ToMaster>(text.as_str()),
        Ok(Some(Ok(other))) => Err(format!("expected a hello, got {other:?}")),
        Ok(Some(Err(error))) => Err(error.to_string()),
        Ok(None) => Err("closed before its hello".into()),
        Err(_) => Err("no hello within 10 s".into()),
    };
    let (name, cores, resume) = match hello.map(|m| check(m, token.as_deref())) {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(reason)) => {
            eprintln!("loadgen: master: refused a worker from {peer}: {reason}");
            let refusal = protocol::encode(&ToWorker::Refused { reason });
            let _ = sink.send(Message::text(refusal)).await;
            let _ = sink.close().await;
            return;
        }
        Err(error) => {
            tracing::debug!("master: {peer}: {error}");
            return;
        }
    };
    let (outbox, mut to_send) = mpsc::unbounded_channel::<ToWorker>();
    if events
        .send(Event::Hello {
            conn,
            name,
            cores,
            resume,
            outbox,
        })
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(super::HEARTBEAT_EVERY);
        loop {
            let message = tokio::select! {
                message = to_send.recv() => match message {
                    Some(message) => message,
                    None => break,
                },
                _ = heartbeat.tick() => ToWorker::Heartbeat,
            };
            let last = matches!(message, ToWorker::Refused { .. } | ToWorker::Quit);
            if sink
                .send(Message::text(protocol::encode(&message)))
                .await
                .is_err()
            {
                break;
            }
            if last {
                let _ = sink.close().await;
                break;
            }
        }
    });
    let why = loop {
        match incoming.next().await {
            Some(Ok(Message::Text(text))) => match protocol::decode::<ToMaster>(text.as_str()) {
                Ok(message) => {
                    if events.send(Event::Message { conn, message }).is_err() {
                        break "the master ended".to_owned();
                    }
                }
                Err(error) => tracing::warn!("master: worker connection {conn}: {error}"),
            },
            Some(Ok(Message::Close(_))) | None => break "connection closed".to_owned(),
            Some(Ok(_)) => {}
            Some(Err(error)) => break format!("connection lost: {error}"),
        }
    };
    writer.abort();
    let _ = events.send(Event::Left { conn, why });
}

/// The worker's name, cores and run to resume, or why it is refused.
fn check(hello: ToMaster, token: Option<&str>) -> Result<(String, usize, Option<Resume>), String> {
    let ToMaster::Hello {
        protocol,
        version,
        name,
        cores,
        token: given,
        resume,
    } = hello
    else {
        return Err("its first message was not a hello".into());
    };
    if protocol != PROTOCOL || version != VERSION {
        return Err(format!(
            "worker {name} runs loadgen {version} (protocol {protocol}); this master runs \
             {VERSION} (protocol {PROTOCOL}): run the same version everywhere"
        ));
    }
    match (token, given.as_deref()) {
        (Some(expected), Some(given)) if constant_time_eq(expected, given) => {}
        (Some(_), Some(_)) => {
            return Err(format!(
                "worker {name} gave a wrong --cluster-token: give it the master's"
            ));
        }
        (Some(_), None) => {
            return Err(format!(
                "worker {name} gave no --cluster-token, and this master requires one"
            ));
        }
        (None, _) => {}
    }
    Ok((name, cores, resume))
}

/// Compares secrets in a time that does not tell how much of them matched.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: &str, token: Option<&str>) -> ToMaster {
        ToMaster::Hello {
            protocol: PROTOCOL,
            version: version.into(),
            name: "w1".into(),
            cores: 2,
            token: token.map(str::to_owned),
            resume: None,
        }
    }

    #[test]
    fn versions_and_tokens_are_checked() {
        assert!(check(hello(VERSION, None), None).is_ok());
        assert!(check(hello(VERSION, Some("s3cret")), Some("s3cret")).is_ok());
        let wrong = check(hello(VERSION, Some("nope")), Some("s3cret")).unwrap_err();
        assert!(wrong.contains("wrong --cluster-token"), "{wrong}");
        assert!(!wrong.contains("s3cret"));
        let none = check(hello(VERSION, None), Some("s3cret")).unwrap_err();
        assert!(none.contains("requires one"), "{none}");
        let old = check(hello("0.0.1", None), None).unwrap_err();
        assert!(old.contains("0.0.1") && old.contains(VERSION), "{old}");
    }
}
