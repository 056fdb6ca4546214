//! The real client Element X is built on, matrix-rust-sdk (matrix-sdk and matrix-sdk-ui 0.18),
//! over Simplified Sliding Sync: room list in recency order, a timeline that paginates back,
//! joining from an invite, messages both ways, and end-to-end encryption between two clients.
//!
//! Runs the scenario program of `tests/clients/rust-sdk` (its own Cargo workspace, built by
//! `scripts/test-clients.sh` into `tests/clients/rust-sdk/target`, or wherever
//! `TRELLIS_RUST_SDK_BIN` points). Without it the test is skipped with a notice, unless
//! `TRELLIS_REQUIRE_RUST_SDK=1` (set by CI) makes that a failure.

use std::{path::PathBuf, time::Duration};

use trellis_testkit::TestServer;

both_modes!(matrix_rust_sdk_element_x_scenario);

mod oauth {
    both_modes!(configured oauth_on; matrix_rust_sdk_oauth_login);

    fn oauth_on(c: &mut trellis_core::config::Config) {
        c.oauth.enabled = true;
    }

    /// Element X's sign-in: `Client::oauth()` registers the client and builds the
    /// authorization URL, the scenario posts the login and consent forms, `finish_login`
    /// exchanges the code; then it syncs, refreshes and logs out.
    async fn matrix_rust_sdk_oauth_login(server: trellis_testkit::TestServer) {
        server.client().register("erin", "scenario password").await;
        let Some(out) = super::run_scenario(&["oauth", server.url(), "erin", "scenario password"]).await else {
            return;
        };
        assert!(out.contains("rust-sdk oauth scenario passed"), "{out}");
    }
}

fn scenario_binary() -> PathBuf {
    match std::env::var_os("TRELLIS_RUST_SDK_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/rust-sdk/target/debug/trellis-rust-sdk-scenario")
        }
    }
}

/// Runs the scenario program with `args`; its output, or `None` when it is not built (and
/// not required).
async fn run_scenario(args: &[&str]) -> Option<String> {
    let bin = scenario_binary();
    if !bin.is_file() {
        assert!(
            std::env::var("TRELLIS_REQUIRE_RUST_SDK").is_err(),
            "matrix-rust-sdk is required but {} is missing",
            bin.display()
        );
        eprintln!("skipping: {} is missing (scripts/test-clients.sh builds it)", bin.display());
        return None;
    }
    let run = tokio::process::Command::new(&bin).args(args).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(240), run).await.expect("rust-sdk scenario finished").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rust-sdk scenario failed:\n{stdout}\n{stderr}");
    Some(stdout.into_owned())
}

async fn matrix_rust_sdk_element_x_scenario(server: TestServer) {
    for name in ["alice", "bob"] {
        server.client().register(name, "scenario password").await;
    }
    let Some(stdout) = run_scenario(&[server.url(), "alice", "bob", "scenario password"]).await else { return };
    eprintln!("{stdout}");
    assert!(stdout.contains("rust-sdk scenario passed"), "{stdout}");
}
