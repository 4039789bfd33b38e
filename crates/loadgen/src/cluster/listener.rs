//! The master's side of the connections: accepts WebSocket connections, has each worker's
//! hello read and checked under a hello's limits ([`super::hello`]), then turns every
//! connection into [`Event`]s for the master and an outbox the master writes [`ToWorker`]
//! messages to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::hello::{self, Rejected};
use super::protocol::{self, Resume, ToMaster, ToWorker};
use super::tls;

/// The TLS and WebSocket handshakes and the hello took longer than this: not a worker (which
/// gives up on its side after as long).
const FIRST_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let first_exchange = async {
        let stream = tls::accept(stream, tls.as_ref()).await.map_err(|e| {
            // A worker without --master-tls, or one that does not trust our certificate.
            eprintln!("loadgen: master: TLS handshake with {peer} failed: {e}");
            Rejected::Dropped(format!("TLS: {e}"))
        })?;
        hello::handshake(stream, token.as_deref()).await
    };
    // A connection that says nothing holds nothing for long.
    let (socket, accepted) =
        match tokio::time::timeout(FIRST_EXCHANGE_TIMEOUT, first_exchange).await {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(Rejected::Refused(reason))) => {
                eprintln!("loadgen: master: refused a worker from {peer}: {reason}");
                return;
            }
            Ok(Err(Rejected::Dropped(why))) => {
                tracing::debug!("master: {peer}: {why}");
                return;
            }
            Err(_) => {
                tracing::debug!("master: {peer}: no hello within 10 s");
                return;
            }
        };
    let hello::Accepted {
        name,
        cores,
        resume,
    } = accepted;
    let (mut sink, mut incoming) = socket.split();
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
