//! The mail injector: users handing their messages to their own system over SMTP submission,
//! one connection per system, the way a mail client would.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use proto::{Capabilities, Reply, ReplyParser, dot_stuff};
use relay::transport::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ScenarioError, SubmissionError};

/// One message to submit.
pub struct Submission<'a> {
    pub from: &'a str,
    pub to: Vec<&'a str>,
    pub bytes: &'a [u8],
    /// Sent with `MAIL FROM:<...> REQUIRETLS` (RFC 8689); needs a session over TLS.
    pub requiretls: bool,
}

/// How a submitter protects its session: STARTTLS verified against the scenario CA, as a mail
/// client would, so that REQUIRETLS can be asked for (it is offered only inside TLS).
#[derive(Clone)]
pub struct SubmissionTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the submission server's certificate carries (the system's MX host).
    pub server_name: String,
}

/// A minimal SMTP client for submission.
pub struct Submitter {
    tcp: Transport<tokio_rustls::client::TlsStream<TcpStream>>,
    replies: ReplyParser,
    server: SocketAddr,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Submitter {
    pub async fn connect(server: SocketAddr, helo: &str) -> Result<Self, ScenarioError> {
        Self::connect_with(server, helo, None).await
    }

    /// Connects and, with `tls`, upgrades by STARTTLS when the server offers it (a system
    /// without STARTTLS stays in plaintext; a REQUIRETLS submission to it is then refused).
    pub async fn connect_with(
        server: SocketAddr,
        helo: &str,
        tls: Option<&SubmissionTls>,
    ) -> Result<Self, ScenarioError> {
        Self::connect_from(server, None, helo, tls).await
    }

    /// [`Submitter::connect_with`] from the source address `bind` (a user's own access line).
    pub async fn connect_from(
        server: SocketAddr,
        bind: Option<std::net::IpAddr>,
        helo: &str,
        tls: Option<&SubmissionTls>,
    ) -> Result<Self, ScenarioError> {
        let connect = async {
            match bind {
                None => TcpStream::connect(server).await,
                Some(ip) => {
                    let socket =
                        if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
                    socket.bind(SocketAddr::new(ip, 0))?;
                    socket.connect(server).await
                }
            }
        };
        let tcp = tokio::time::timeout(TIMEOUT, connect)
            .await
            .map_err(|_| SubmissionError::ConnectTimeout { server })?
            .map_err(|source| SubmissionError::Io { server, source })?;
        let _ = tcp.set_nodelay(true);
        let mut s = Self { tcp: Transport::Plain(tcp), replies: ReplyParser::new(4096), server };
        s.expect(220, "greeting").await?;
        let caps = s.command(&format!("EHLO {helo}"), 250).await?;
        if let Some(tls) = tls
            && Capabilities::from_reply(&caps).starttls()
        {
            s.command("STARTTLS", 220).await?;
            let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                .map_err(|source| SubmissionError::ServerName { server, name: tls.server_name.clone(), source })?;
            let tcp = s.tcp.take_plain().ok_or(SubmissionError::AlreadyTls { server })?;
            let stream =
                tokio::time::timeout(TIMEOUT, tokio_rustls::TlsConnector::from(tls.config.clone()).connect(name, tcp))
                    .await
                    .map_err(|_| SubmissionError::HandshakeTimeout { server })?
                    .map_err(|source| SubmissionError::Handshake { server, source })?;
            s.tcp = Transport::Tls(Box::new(stream));
            s.command(&format!("EHLO {helo}"), 250).await?;
        }
        Ok(s)
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tcp.is_tls()
    }

    /// Submits one message; returns once the server said 250 (it is then durably queued).
    pub async fn submit(&mut self, m: &Submission<'_>) -> Result<(), ScenarioError> {
        let param = if m.requiretls { " REQUIRETLS" } else { "" };
        self.command(&format!("MAIL FROM:<{}>{param}", m.from), 250).await?;
        for r in &m.to {
            self.command(&format!("RCPT TO:<{r}>"), 250).await?;
        }
        self.command("DATA", 354).await?;
        self.send(&dot_stuff(m.bytes)).await?;
        self.expect(250, "end of data").await?;
        Ok(())
    }

    pub async fn quit(mut self) {
        let _ = self.command("QUIT", 221).await;
    }

    async fn command(&mut self, line: &str, want: u16) -> Result<Reply, ScenarioError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.expect(want, line).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ScenarioError> {
        tokio::time::timeout(TIMEOUT, async {
            self.tcp.write_all(bytes).await?;
            self.tcp.flush().await
        })
        .await
        .map_err(|_| SubmissionError::WriteTimeout { server: self.server })?
        .map_err(|source| SubmissionError::Io { server: self.server, source }.into())
    }

    async fn expect(&mut self, want: u16, after: &str) -> Result<Reply, ScenarioError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.replies.next_reply() {
                let r = r.map_err(|source| SubmissionError::BadReply { server: self.server, source })?;
                if r.code != want {
                    return Err(SubmissionError::Refused {
                        server: self.server,
                        after: after.into(),
                        reply: r,
                        expected: want,
                    }
                    .into());
                }
                return Ok(r);
            }
            let n = tokio::time::timeout(TIMEOUT, self.tcp.read(&mut buf))
                .await
                .map_err(|_| SubmissionError::NoReply { server: self.server, after: after.into() })?
                .map_err(|source| SubmissionError::Io { server: self.server, source })?;
            if n == 0 {
                return Err(SubmissionError::Closed { server: self.server, after: after.into() }.into());
            }
            self.replies.extend(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::reply::ReplyError;

    /// A server on an ephemeral loopback port that writes `greeting` to its first client, then
    /// holds the connection until the client goes (`hold`) or closes it at once.
    async fn greeter(greeting: &'static [u8], hold: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.write_all(greeting).await;
                let mut sink = [0u8; 512];
                while hold && matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        });
        addr
    }

    /// A caller can tell a server that speaks no SMTP from one that refuses, one that hangs up
    /// and an address where nobody listens, by the variant, with the server's own words kept.
    #[tokio::test]
    async fn submission_failures_are_told_apart_by_variant() {
        let server = greeter(b"hello there\r\n", true).await;
        match Submitter::connect(server, "t").await.err().expect("not SMTP") {
            ScenarioError::Submission(SubmissionError::BadReply { server: at, source }) => {
                assert_eq!(at, server);
                assert_eq!(source, ReplyError::Malformed("hello there".into()));
            }
            e => panic!("expected BadReply, got {e}"),
        }

        let server = greeter(b"554 5.3.2 not today\r\n", true).await;
        let e = Submitter::connect(server, "t").await.err().expect("refused");
        let text = e.to_string();
        match e {
            ScenarioError::Submission(SubmissionError::Refused { after, reply, expected, .. }) => {
                assert_eq!((after.as_str(), reply.code, expected), ("greeting", 554, 220));
                assert_eq!(reply.lines, vec!["5.3.2 not today".to_string()]);
            }
            e => panic!("expected Refused, got {e}"),
        }
        assert!(text.contains(&server.to_string()) && text.contains("554 5.3.2 not today"), "{text}");

        let server = greeter(b"", false).await;
        match Submitter::connect(server, "t").await.err().expect("hung up") {
            ScenarioError::Submission(SubmissionError::Closed { server: at, after }) => {
                assert_eq!((at, after.as_str()), (server, "greeting"));
            }
            e => panic!("expected Closed, got {e}"),
        }

        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let nobody = gone.local_addr().expect("addr");
        drop(gone);
        match Submitter::connect(nobody, "t").await.err().expect("nobody listens") {
            ScenarioError::Submission(SubmissionError::Io { server: at, source }) => {
                assert_eq!((at, source.kind()), (nobody, std::io::ErrorKind::ConnectionRefused));
            }
            e => panic!("expected Io, got {e}"),
        }
    }
}
