//! The TCP forwarder that runs inside the tunnel container: every connection accepted on
//! `listen` is joined to a new connection to `to`, resolved again each time so that a service
//! restarted under a new address is found. What became of each connection is one line on
//! stderr, which [`super::Tunnel::open`] reads back from the container's log to know that the
//! target answered from inside the network.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The argument that starts the hidden mode: `<binary> __tunnel LISTEN TO`.
pub const MODE: &str = "__tunnel";

/// How long one connection to the target may take before the client is let go.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the forwarder says of one connection (a line of its stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The target accepted the connection.
    Reached,
    /// It did not: why.
    Unreachable(String),
}

const REACHED: &str = "tunnel: reached ";
const UNREACHABLE: &str = "tunnel: cannot reach ";

impl Event {
    fn line(&self, to: &str) -> String {
        match self {
            Event::Reached => format!("{REACHED}{to}"),
            Event::Unreachable(why) => format!("{UNREACHABLE}{to}: {why}"),
        }
    }

    /// The event a line of the stderr of a forwarder to `to` reports, if any.
    pub(crate) fn parse(line: &str, to: &str) -> Option<Event> {
        if line.strip_prefix(REACHED) == Some(to) {
            return Some(Event::Reached);
        }
        let why = line
            .strip_prefix(UNREACHABLE)?
            .strip_prefix(to)?
            .strip_prefix(": ")?;
        Some(Event::Unreachable(why.to_owned()))
    }
}

/// Forwards every connection accepted on `listen` to `to` (`host:port`), until the process ends.
pub async fn serve(listen: SocketAddr, to: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!(
        "tunnel: listening on {}, forwarding to {to}",
        listener.local_addr()?
    );
    run(listener, to).await
}

/// [`serve`] on a listener already bound.
pub async fn run(listener: TcpListener, to: String) -> std::io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(forward(client, to.clone()));
            }
            // Out of descriptors, or a connection reset before it was accepted: the next
            // one may do.
            Err(error) => {
                eprintln!("tunnel: accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn forward(mut client: TcpStream, to: String) {
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&to)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            eprintln!("{}", Event::Unreachable(error.to_string()).line(&to));
            return;
        }
        Err(_) => {
            let why = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
            eprintln!("{}", Event::Unreachable(why).line(&to));
            return;
        }
    };
    eprintln!("{}", Event::Reached.line(&to));
    let mut upstream = upstream;
    // Database protocols are request/response: no batching delay on either side.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Runs the forwarder when the process was started as `<binary> __tunnel LISTEN TO`: its exit
/// code then, `None` otherwise (the binary goes on with its own command line). Called first
/// thing in `main`, before any runtime exists.
pub fn main_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != MODE {
        return None;
    }
    let args: Vec<String> = args.filter_map(|a| a.into_string().ok()).collect();
    let (listen, to) = match args.as_slice() {
        [listen, to] => match listen.parse::<SocketAddr>() {
            Ok(listen) => (listen, to.clone()),
            Err(error) => {
                eprintln!("tunnel: LISTEN {listen:?}: {error}");
                return Some(ExitCode::from(2));
            }
        },
        _ => {
            eprintln!("usage: {MODE} LISTEN_ADDR:PORT TARGET_HOST:PORT");
            return Some(ExitCode::from(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tunnel: cannot start the runtime: {error}");
            return Some(ExitCode::from(2));
        }
    };
    match runtime.block_on(serve(listen, to)) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("tunnel: cannot listen on {listen}: {error}");
            Some(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn each_event_reads_back_from_its_line() {
        for event in [
            Event::Reached,
            Event::Unreachable("failed to lookup address information".into()),
        ] {
            assert_eq!(
                Event::parse(&event.line("redis:6379"), "redis:6379"),
                Some(event)
            );
        }
        let listening = "tunnel: listening on 0.0.0.0:4000, forwarding to redis:6379";
        assert_eq!(Event::parse(listening, "redis:6379"), None);
        assert_eq!(
            Event::parse(&Event::Reached.line("db:5432"), "redis:6379"),
            None
        );
    }

    async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        (addr, task)
    }

    async fn forwarder(to: String) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run(listener, to));
        addr
    }

    #[tokio::test]
    async fn bytes_go_both_ways_and_a_target_that_comes_later_is_found() {
        // A port that nothing listens on yet: the first client is let go at once.
        let (target, echo) = echo_server().await;
        echo.abort();
        let _ = echo.await;
        let tunnel = forwarder(format!("localhost:{}", target.port())).await;
        let mut refused = TcpStream::connect(tunnel).await.unwrap();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

        // The target starts on that port: the next connection reaches it.
        let listener = TcpListener::bind(target).await.unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (mut read, mut write) = socket.split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
        });
        let mut client = TcpStream::connect(tunnel).await.unwrap();
        client.write_all(b"PING\r\n").await.unwrap();
        let mut got = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"PING\r\n");
    }
}
