//! What the tests of the `trellis` binary share: free ports, a child process killed when
//! dropped, and waiting for an operations endpoint's status.

#![allow(dead_code)]

use std::{
    process::Child,
    time::{Duration, Instant},
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `trellis`, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn status(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

/// Waits (30 s at most) until `url` answers `want`.
pub async fn until(url: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(url).await != Some(want) {
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
