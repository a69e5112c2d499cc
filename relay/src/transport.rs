//! A connection that starts in plaintext and may be upgraded by STARTTLS.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// `T` is tokio-rustls' server or client `TlsStream<TcpStream>`.
pub enum Transport<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// Only while the TCP stream is handed to the TLS handshake; any I/O on it is an error.
    Upgrading,
}

impl<T> Transport<T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Takes the plaintext TCP stream out for the TLS handshake.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Transport::Upgrading) {
            Transport::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}

fn upgrading() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "connection is being upgraded to TLS")
}

impl<T: AsyncRead + Unpin> AsyncRead for Transport<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Transport<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}
