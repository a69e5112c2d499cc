//! The bench's SMTP client (tokio, tokio-rustls) and a relay started for benching.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::{Reply, ReplyParser};
use relay::{InboundTls, OutboundTls, Relay, RelayConfig, RelayHandle, StaticResolver, TlsIdentity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::{Identity, KeyKind, SERVER_NAME};

/// The domain the bench relay delivers locally.
pub const LOCAL_DOMAIN: &str = "bench.example";

fn err(what: impl Into<String>) -> std::io::Error {
    std::io::Error::other(what.into())
}

/// A minimal ESMTP client: commands, replies parsed with `proto::ReplyParser`.
pub struct Client<S> {
    pub io: S,
    replies: ReplyParser,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(io: S) -> Self {
        Self { io, replies: ReplyParser::new(proto::MAX_COMMAND_LINE), buf: vec![0; 16 * 1024] }
    }

    pub async fn reply(&mut self) -> std::io::Result<Reply> {
        loop {
            match self.replies.next_reply() {
                Some(Ok(r)) => return Ok(r),
                Some(Err(e)) => return Err(err(format!("bad reply line: {e:?}"))),
                None => {}
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Err(err("server closed the connection"));
            }
            self.replies.extend(&self.buf[..n]);
        }
    }

    /// Reads one reply and checks its code.
    pub async fn expect(&mut self, code: u16) -> std::io::Result<Reply> {
        let r = self.reply().await?;
        if r.code != code {
            return Err(err(format!("expected {code}, got {}", r.summary())));
        }
        Ok(r)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    pub async fn ehlo(&mut self) -> std::io::Result<Reply> {
        self.send(b"EHLO client.sender.example\r\n").await?;
        self.expect(250).await
    }

    /// One mail transaction: MAIL, RCPT and DATA pipelined (RFC 2920, the relay offers
    /// PIPELINING, Postfix's client does the same), then the dot-stuffed body (`wire`, ending
    /// with the `.` line), then the final `250`.
    pub async fn transaction(&mut self, size: usize, wire: &[u8]) -> std::io::Result<()> {
        let cmds = format!(
            "MAIL FROM:<alice@sender.example> SIZE={size} BODY=8BITMIME\r\nRCPT TO:<bob@{LOCAL_DOMAIN}>\r\nDATA\r\n"
        );
        self.send(cmds.as_bytes()).await?;
        self.expect(250).await?;
        self.expect(250).await?;
        self.expect(354).await?;
        self.send(wire).await?;
        self.expect(250).await?;
        Ok(())
    }

    pub async fn quit(&mut self) -> std::io::Result<()> {
        self.send(b"QUIT\r\n").await?;
        self.expect(221).await?;
        Ok(())
    }
}

/// Connects, reads the greeting and says EHLO: a plaintext session ready for MAIL.
pub async fn open_plain(addr: SocketAddr) -> std::io::Result<Client<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut c = Client::new(tcp);
    c.expect(220).await?;
    c.ehlo().await?;
    Ok(c)
}

/// Connects, EHLO, STARTTLS, the TLS handshake, EHLO again (RFC 3207 §4.2): an encrypted session
/// ready for MAIL.
pub async fn open_starttls(addr: SocketAddr, tls: &TlsConnector) -> std::io::Result<Client<TlsStream<TcpStream>>> {
    let mut plain = open_plain(addr).await?;
    plain.send(b"STARTTLS\r\n").await?;
    plain.expect(220).await?;
    if plain.replies.pending() != 0 {
        return Err(err("bytes after the 220 to STARTTLS (injection?)"));
    }
    let name = crate::tls::server_name();
    let stream = tls.connect(name, plain.io).await?;
    let mut c = Client::new(stream);
    c.ehlo().await?;
    Ok(c)
}

/// A relay on 127.0.0.1 (ephemeral port) with STARTTLS offered (`may`), spool and mailboxes in
/// a temporary directory, every recipient domain but [`LOCAL_DOMAIN`] refused.
pub struct BenchRelay {
    pub handle: Option<RelayHandle>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl BenchRelay {
    /// The temporary directory goes under `$SMTPLAB_BENCH_DIR` when set (to bench another file
    /// system), else under the system temp dir.
    pub async fn start() -> BenchRelay {
        let dir = match std::env::var_os("SMTPLAB_BENCH_DIR") {
            Some(d) => tempfile::Builder::new().prefix("smtplab-bench-").tempdir_in(d),
            None => tempfile::Builder::new().prefix("smtplab-bench-").tempdir(),
        }
        .expect("temporary directory for the bench relay");
        let id = Identity::new(KeyKind::EcdsaP256);
        let cfg = RelayConfig {
            system: "bench".into(),
            hostname: SERVER_NAME.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            submission: None,
            bind: None,
            spool: dir.path().join("spool"),
            local_domains: vec![LOCAL_DOMAIN.into()],
            relay_domains: Vec::new(),
            relay_clients: Vec::new(),
            mailbox_dir: dir.path().join("mail"),
            tls_identity: Some(TlsIdentity { cert_chain_pem: id.chain_pem, key_pem: id.key_pem }),
            // rustls' defaults (ring provider): what a relay negotiates unless told otherwise.
            tls: Default::default(),
            inbound_tls: InboundTls::May,
            outbound_tls: OutboundTls::None,
            outbound_tls_by_domain: Vec::new(),
            mta_sts: None,
            ca_pem: None,
            resolver: Arc::new(StaticResolver::new()),
            records: None,
            keylog: None,
            limits: Default::default(),
            timeouts: Default::default(),
            delivery: Default::default(),
        };
        let handle = Relay::start(cfg).await.expect("bench relay starts");
        let addr = handle.listen;
        BenchRelay { handle: Some(handle), addr, dir }
    }

    /// Waits until every accepted message was delivered to its mailbox, then deletes the
    /// mailboxes (a 10 MB bench would otherwise fill the disk).
    pub async fn drain(&self) {
        if let Some(h) = &self.handle {
            let left = h.wait_idle(Duration::from_secs(120)).await;
            assert_eq!(left, 0, "bench relay did not deliver its queue within 120 s");
        }
        let _ = std::fs::remove_dir_all(self.dir.path().join("mail").join(LOCAL_DOMAIN));
    }

    pub async fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown(Duration::from_secs(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_and_starttls_transactions_reach_the_mailbox() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let mut relay = BenchRelay::start().await;
            let wire = proto::dot_stuff(&crate::mail::message(4096, 1));
            let mut plain = open_plain(relay.addr).await.expect("plain session");
            plain.transaction(4096, &wire).await.expect("plain transaction");
            plain.transaction(4096, &wire).await.expect("second transaction on the session");
            plain.quit().await.expect("quit");
            let p = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = crate::tls::client_config(rustls::DEFAULT_VERSIONS, p, crate::tls::Verify::AnyCert, true);
            let tls = TlsConnector::from(cfg);
            let mut enc = open_starttls(relay.addr, &tls).await.expect("STARTTLS session");
            enc.transaction(4096, &wire).await.expect("TLS transaction");
            enc.quit().await.expect("quit");
            let h = relay.handle.as_ref().expect("running");
            assert_eq!(h.wait_idle(Duration::from_secs(30)).await, 0);
            let inbox = relay.dir.path().join("mail").join(LOCAL_DOMAIN).join("bob");
            let n = std::fs::read_dir(&inbox).expect("mailbox").count();
            assert_eq!(n, 3);
            relay.drain().await;
            relay.shutdown().await;
        });
    }
}
