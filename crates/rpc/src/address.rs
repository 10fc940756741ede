//! Where a component listens: `unix:/path/to.sock` on one node, `http://host:port` (or
//! `host:port`) across nodes. The same text is what a worker reports to the master and what a
//! client dials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use crate::tls::Role;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    /// Parses `unix:PATH`, `unix://PATH`, `http://HOST:PORT` or `HOST:PORT`.
    pub fn parse(text: &str) -> Result<Address, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix://").or_else(|| text.strip_prefix("unix:")) {
            if !path.starts_with('/') {
                return Err(format!("{text}: a Unix socket address needs an absolute path (unix:/run/x.sock)"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let hostport = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://")).unwrap_or(text);
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Address::Tcp(hostport.to_string())),
            _ => Err(format!("{text}: expected unix:/path/to.sock or HOST:PORT")),
        }
    }

    /// A channel to a component of role `peer` that connects on first use and reconnects
    /// after the peer restarts. Over TCP, mutual TLS with this process's installed
    /// credentials (see [`crate::tls`]), checking that the peer holds `peer`'s role; an error
    /// when there are none.
    pub fn channel(&self, peer: Role) -> Result<Channel, String> {
        Ok(match self {
            Address::Tcp(hostport) => {
                let tls = crate::tls::client_config(peer)?;
                with_windows(Endpoint::from_shared(format!("https://{hostport}")).map_err(|e| format!("{hostport}: {e}"))?)
                    .tls_config(tls)
                    .map_err(|e| format!("TLS for {hostport}: {e}"))?
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .connect_lazy()
            }
            Address::Unix(path) => {
                let path = path.clone();
                // The URI is required but unused: the connector below decides where to go.
                with_windows(Endpoint::from_static("http://localhost"))
                    .connect_timeout(Duration::from_secs(2))
                    .connect_with_connector_lazy(tower::service_fn(move |_| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                        }
                    }))
            }
        })
    }

    /// Binds the address (a stale socket file from a killed process is replaced) and returns
    /// the incoming connections for `Server::serve_with_incoming`, with the bound address (the
    /// real port when port 0 was asked).
    pub async fn bind(&self) -> std::io::Result<(Incoming, Address)> {
        match self {
            Address::Unix(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                let listener = tokio::net::UnixListener::bind(path)?;
                // Unix sockets carry no TLS: only this user may connect (the run directory is
                // 0700 too).
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                Ok((Incoming::Unix(UnixListenerStream::new(listener)), self.clone()))
            }
            Address::Tcp(hostport) => {
                let listener = tokio::net::TcpListener::bind(hostport).await?;
                let bound = Address::Tcp(listener.local_addr()?.to_string());
                Ok((Incoming::Tcp(TcpListenerStream::new(listener)), bound))
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(hp) => write!(f, "http://{hp}"),
        }
    }
}

/// HTTP/2 flow-control windows sized for MiB-sized read replies: with the 64 KiB default, a
/// 1 MiB reply waits for a window update every 64 KiB.
///
/// And HTTP/2 keepalive: a peer whose link went down sends no reset, so without pings a call
/// to it waits on TCP retransmission for minutes. A ping every [`KEEPALIVE_INTERVAL`]
/// unanswered for [`KEEPALIVE_TIMEOUT`] fails the connection and every call on it, so callers
/// move on within a second and a half. Pings are answered by the peer's HTTP/2 layer, not its handlers: a busy
/// peer (a slow UFS fetch) is not taken for a dead one.
fn with_windows(e: Endpoint) -> Endpoint {
    e.initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// See [`with_windows`]: a dead link is noticed within their sum.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepted connections of either kind.
pub enum Incoming {
    Unix(UnixListenerStream),
    Tcp(TcpListenerStream),
}

impl Incoming {
    /// A server builder for these connections: with mutual TLS (this process's installed
    /// credentials) for TCP, plain for a Unix socket (protected by its file permissions).
    pub fn server(&self) -> Result<tonic::transport::Server, String> {
        let builder = tonic::transport::Server::builder();
        match self {
            Incoming::Unix(_) => Ok(builder),
            Incoming::Tcp(_) => builder.tls_config(crate::tls::server_config()?).map_err(|e| format!("TLS: {e}")),
        }
    }

    /// Serves `router` until `shutdown` resolves.
    pub async fn serve(
        self,
        router: tonic::transport::server::Router,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        match self {
            Incoming::Unix(s) => router.serve_with_incoming_shutdown(s, shutdown).await,
            Incoming::Tcp(s) => router.serve_with_incoming_shutdown(s, shutdown).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_tcp_addresses() {
        assert_eq!(Address::parse("unix:/run/a.sock").unwrap(), Address::Unix("/run/a.sock".into()));
        assert_eq!(Address::parse("unix:///run/a.sock").unwrap(), Address::Unix("/run/a.sock".into()));
        assert_eq!(Address::parse("http://127.0.0.1:9").unwrap(), Address::Tcp("127.0.0.1:9".into()));
        assert_eq!(Address::parse("[::1]:80").unwrap(), Address::Tcp("[::1]:80".into()));
        assert_eq!(Address::parse("unix:/x").unwrap().to_string(), "unix:/x");
    }

    #[test]
    fn rejects_what_cannot_be_dialled() {
        assert!(Address::parse("unix:relative.sock").unwrap_err().contains("absolute path"));
        assert!(Address::parse("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(Address::parse("h:99999").is_err());
    }
}
