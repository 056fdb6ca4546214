//! Restarting the whole of Trellis, as an operator restarting every process: each node stops,
//! then starts again with its configuration on the same addresses (clients, and appservices
//! that call Trellis, keep their URLs).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use trellis_homeserver::Listeners;

use super::TestServer;

/// Binds `addr` again (its previous listener has just closed; retried for a moment).
async fn rebind(addr: Option<SocketAddr>) -> Option<TcpListener> {
    let addr = addr?;
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return Some(listener);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr} again");
}

impl TestServer {
    /// Stops every running node, then starts each again (in the order they first started)
    /// with the same configuration and ports. Not for `split_elastic` servers.
    pub async fn restart(&mut self) {
        let mut stopped = Vec::new();
        for (name, node) in self.nodes.drain(..) {
            let addrs = (node.http_addr, node.grpc_addr, node.metrics_addr);
            node.stop().await;
            stopped.push((name, addrs));
        }
        for (name, (http, grpc, metrics)) in stopped {
            let config = self
                .configs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| panic!("no configuration kept for {name}"));
            let listeners = Listeners {
                http: rebind(http).await,
                grpc: rebind(grpc).await,
                metrics: rebind(metrics).await,
                ..Default::default()
            };
            let node = trellis_homeserver::start(config, listeners)
                .await
                .unwrap_or_else(|e| panic!("{name} starts again: {e:#}"));
            self.nodes.push((name, node));
        }
    }
}
