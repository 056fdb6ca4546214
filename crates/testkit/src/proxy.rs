//! [`TcpProxy`]: a loopback TCP relay a test can cut and restore, to make a dependency such
//! as PostgreSQL unreachable for the server under test without touching the real one.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

pub struct TcpProxy {
    addr: SocketAddr,
    open: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Relays connections on a free loopback port to `target` (`host:port`).
    pub async fn start(target: String) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let open = Arc::new(watch::channel(true).0);
        let gate = open.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !*gate.borrow() {
                    // Cut: the connection is closed at once, as a dead server's would fail.
                    continue;
                }
                let target = target.clone();
                let mut cut = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        TcpProxy { addr, open, accept }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every relayed connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `url` (`scheme://user@host:port/path`) with its `host:port` replaced by `addr`.
pub fn url_via(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (user, hostpath) = match rest.rsplit_once('@') {
        Some((user, hostpath)) => (format!("{user}@"), hostpath),
        None => (String::new(), rest),
    };
    let (host, path) = hostpath.split_once('/').map_or((hostpath, ""), |(h, p)| (h, p));
    (format!("{scheme}://{user}{addr}/{path}"), host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_the_host() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (url, host) = url_via("postgres://postgres@127.0.0.1:15432/db_1", addr);
        assert_eq!(url, "postgres://postgres@127.0.0.1:4000/db_1");
        assert_eq!(host, "127.0.0.1:15432");
    }
}
