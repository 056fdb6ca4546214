//! The standard gRPC health service (`grpc.health.v1.Health`) that every Trellis gRPC server
//! carries, so load balancers, Kubernetes `grpc` probes and `grpc_health_probe` can ask it;
//! and the client side, with which a gateway asks the services it calls.

use std::time::Duration;

pub use tonic_health::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_check_response, health_client::HealthClient};

/// The serving status a server reports, overall (the empty service name) and per service.
#[derive(Clone)]
pub struct HealthReporter {
    inner: tonic_health::server::HealthReporter,
    services: Vec<&'static str>,
}

impl HealthReporter {
    /// The names of the Trellis services this server carries (e.g. `trellis.auth.v1.Auth`).
    pub fn services(&self) -> &[&'static str] {
        &self.services
    }

    /// Sets the overall status and that of every service to `serving` or not.
    pub async fn set(&self, serving: bool) {
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.inner.set_service_status("", status).await;
        for name in &self.services {
            self.inner.set_service_status(name, status).await;
        }
    }
}

/// Adds the health service to `routes`, reporting on `services` (the names of the other
/// services added); everything starts as not serving until the first [`HealthReporter::set`].
pub async fn add(routes: &mut tonic::service::RoutesBuilder, services: Vec<&'static str>) -> HealthReporter {
    let (inner, service) = tonic_health::server::health_reporter();
    routes.add_service(service);
    let reporter = HealthReporter { inner, services };
    reporter.set(false).await;
    reporter
}

/// Asks the health service behind `channel` about `service` ("" for the server as a whole),
/// waiting at most `timeout`. An unreachable server or one without the health service is an
/// error; a server that answers gives its status.
pub async fn check(
    channel: tonic::transport::Channel,
    service: &str,
    timeout: Duration,
) -> Result<ServingStatus, String> {
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest { service: service.to_owned() };
    let answer = tokio::time::timeout(timeout, client.check(request))
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    Ok(match answer.into_inner().status() {
        health_check_response::ServingStatus::Serving => ServingStatus::Serving,
        health_check_response::ServingStatus::NotServing => ServingStatus::NotServing,
        _ => ServingStatus::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_what_it_is_told() {
        let mut routes = tonic::service::RoutesBuilder::default();
        let reporter = add(&mut routes, vec!["trellis.test.v1.Probe"]).await;
        let url = crate::server::spawn_on_free_port(routes.routes()).await;
        let channel = crate::channel(&url).unwrap();
        let wait = Duration::from_secs(5);
        assert_eq!(check(channel.clone(), "", wait).await.unwrap(), ServingStatus::NotServing);
        reporter.set(true).await;
        assert_eq!(check(channel.clone(), "", wait).await.unwrap(), ServingStatus::Serving);
        assert_eq!(check(channel.clone(), "trellis.test.v1.Probe", wait).await.unwrap(), ServingStatus::Serving);
        // An unknown service is NOT_FOUND, as the health protocol says.
        assert!(check(channel.clone(), "trellis.nope.v1.Nope", wait).await.unwrap_err().contains("not found"));
        reporter.set(false).await;
        assert_eq!(check(channel, "trellis.test.v1.Probe", wait).await.unwrap(), ServingStatus::NotServing);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error() {
        let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        assert!(check(crate::channel(&url).unwrap(), "", Duration::from_secs(2)).await.is_err());
    }
}
