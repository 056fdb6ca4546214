//! A real client library, matrix-js-sdk with its Rust crypto (Node), driving an encrypted DM end to end.
//!
//! Runs `tests/clients/js/e2ee_scenario.mjs`: two fresh users, an encrypted DM, messages each side decrypts, and
//! push-rule notification counts that rise and fall. Needs `node` and `tests/clients/js/node_modules`
//! (`scripts/test-clients.sh` runs `npm ci`). Without them the test is skipped with a notice, unless
//! `TRELLIS_REQUIRE_JS=1` (set by CI) makes that a failure.

use std::path::Path;
use std::time::Duration;

use trellis_testkit::TestServer;

both_modes!(matrix_js_sdk_e2ee_scenario);

async fn matrix_js_sdk_e2ee_scenario(server: TestServer) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let node = tokio::process::Command::new("node").arg("--version").output().await.is_ok_and(|o| o.status.success());
    let installed = dir.join("node_modules/matrix-js-sdk").is_dir();
    if !node || !installed {
        let missing = if node { "tests/clients/js/node_modules (npm ci there)" } else { "node" };
        assert!(std::env::var("TRELLIS_REQUIRE_JS").is_err(), "matrix-js-sdk is required but {missing} is missing");
        eprintln!("skipping: {missing} is missing (scripts/test-clients.sh installs matrix-js-sdk)");
        return;
    }
    let run = tokio::process::Command::new("node")
        .arg("e2ee_scenario.mjs")
        .arg(server.url())
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), run).await.expect("js-sdk scenario finished").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "js-sdk scenario failed:\n{stdout}\n{stderr}");
    // The step list, the request summary and the SDK's warnings, for the test's captured output.
    eprintln!("{stdout}\n{stderr}");
    assert!(stdout.contains("js-sdk scenario passed"), "{stdout}");
}
