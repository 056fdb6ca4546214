//! A real client library, matrix-nio (Python), driving a whole scenario over HTTP.
//!
//! Needs `python3` with `matrix-nio` (`make test` installs it). Without it the test is
//! skipped with a notice, unless `TRELLIS_REQUIRE_NIO=1` (set by CI) makes that a failure.

use std::time::Duration;

use trellis_testkit::TestServer;

both_modes!(matrix_nio_scenario);

async fn matrix_nio_scenario(server: TestServer) {
    let available = tokio::process::Command::new("python3")
        .args(["-c", "import nio"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(std::env::var("TRELLIS_REQUIRE_NIO").is_err(), "matrix-nio is required but `import nio` fails");
        eprintln!("skipping: python3 with matrix-nio is not installed (pip install matrix-nio)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/nio_scenario.py");
    let run = tokio::process::Command::new("python3").arg(script).arg(server.url()).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("nio scenario finished").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nio scenario failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("nio scenario passed"), "{stdout}");
}
