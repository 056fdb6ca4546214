//! `trellis check URL`: what an operator's web tester would check of a homeserver's client
//! API, from the command line — each check one [`Finding`] with what to fix.

mod api;
mod tls;

use std::time::Duration;

pub use api::Target;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, but something will bite later (a certificate near expiry, no well-known).
    Warn,
    Fail,
    /// Not run: it needs something not given (credentials) or an earlier check failed.
    Skip,
}

/// The result of one check: its name, what was found, and for a warning or failure what to
/// do about it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Ok, detail: detail.into(), fix: None }
    }
    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn skip(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding { check, outcome: Outcome::Skip, detail: detail.into(), fix: None }
    }

    /// One line: `ok    versions: v1.1 … v1.15`, with ` — fix: …` when there is one.
    pub fn line(&self) -> String {
        let tag = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        match &self.fix {
            Some(fix) => format!("{tag:<5} {}: {} — fix: {fix}", self.check, self.detail),
            None => format!("{tag:<5} {}: {}", self.check, self.detail),
        }
    }
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server name (`example.org`) or the client API's base URL
    /// (`https://matrix.example.org`); without a scheme, `https://` is assumed.
    pub url: String,
    /// A test account for the sync round trip (`@user:server` or a localpart).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Extra CA certificates (PEM) to trust, for private deployments.
    pub ca_pem: Option<Vec<u8>>,
    /// A certificate expiring within this many days is a warning.
    pub expiry_warn_days: u64,
    /// Per request.
    pub timeout: Duration,
}

impl Options {
    pub fn new(url: impl Into<String>) -> Options {
        Options {
            url: url.into(),
            user: None,
            password: None,
            ca_pem: None,
            expiry_warn_days: 14,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Runs every check in order; never fails itself: what goes wrong is a finding.
pub async fn run(options: &Options) -> Vec<Finding> {
    let mut findings = Vec::new();
    let target = match Target::new(options) {
        Ok(target) => target,
        Err(finding) => return vec![finding],
    };
    if let Some(finding) = tls::check(&target, options).await {
        findings.push(finding);
    }
    findings.extend(api::run(&target, options).await);
    findings
}

/// Whether every check passed or only warned (the exit status of `trellis check`).
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.outcome != Outcome::Fail)
}
