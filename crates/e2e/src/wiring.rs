//! How the processes of a test stack are wired: a collector's ports and data directory
//! ([`collector_env`]), and the demo services' ports, peers and collector
//! ([`demo_services`], each a [`ServiceSpec`] that starts it), for [`Stack`](crate::Stack)
//! and for tests that arrange collectors of their own (`tests/peers.rs`).

use std::net::SocketAddr;
use std::path::Path;

use crate::start::{StartError, wait_ready};
use crate::{Proc, START_TIMEOUT, free_port};

/// The environment of a collector with its ingest and query ports on `ingest_addr` and
/// `query_addr`, its gRPC and sampling ports on any free port, and its data in `data_dir`.
pub fn collector_env(
    ingest_addr: SocketAddr,
    query_addr: SocketAddr,
    data_dir: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("COLLECTOR_INGEST_ADDR", ingest_addr.to_string()),
        ("COLLECTOR_QUERY_ADDR", query_addr.to_string()),
        ("COLLECTOR_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("COLLECTOR_SAMPLING_ADDR", "127.0.0.1:0".to_owned()),
        ("COLLECTOR_DATA_DIR", data_dir.display().to_string()),
    ]
}

/// How one demo service is started (a [`Stack`] keeps it to restart the service).
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The binary, e.g. `"order-service"`.
    pub bin: &'static str,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its environment.
    pub env: Vec<(&'static str, String)>,
}

impl ServiceSpec {
    /// The service's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the service, logging to `<log_dir>/<bin>.log`, and waits until its
    /// `/healthz` answers.
    ///
    /// # Panics
    /// If it does not become healthy within [`START_TIMEOUT`].
    pub async fn start(&self, client: &reqwest::Client, log_dir: &Path) -> Proc {
        self.try_start(client, log_dir)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`start`](Self::start), answering why it did not start instead of panicking: its
    /// `/healthz` must answer while the service itself holds the port ([`wait_ready`]).
    ///
    /// # Errors
    /// [`StartError`]: [`StartError::PortTaken`] when another process took its port.
    pub async fn try_start(
        &self,
        client: &reqwest::Client,
        log_dir: &Path,
    ) -> Result<Proc, StartError> {
        let mut proc = Proc::spawn(self.bin, &self.env, log_dir);
        let health = format!("{}/healthz", self.url());
        wait_ready(client, &health, self.port, &mut proc, START_TIMEOUT).await?;
        Ok(proc)
    }

    /// Moves the service to `port` (its `LISTEN_ADDR` too).
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
        for (key, value) in &mut self.env {
            if *key == "LISTEN_ADDR" {
                *value = format!("127.0.0.1:{port}");
            }
        }
    }
}

/// Moves the service `bin` of `services` to `port`, and points every variable of the
/// others that named its old URL at the new one; answers the new URL (`None` when `bin` is
/// not among them).
pub(crate) fn move_service(services: &mut [ServiceSpec], bin: &str, port: u16) -> Option<String> {
    let spec = services.iter_mut().find(|s| s.bin == bin)?;
    let old = spec.url();
    spec.set_port(port);
    let new = spec.url();
    for other in services.iter_mut() {
        for (_, value) in &mut other.env {
            if *value == old {
                value.clone_from(&new);
            }
        }
    }
    Some(new)
}

/// The demo services wired to each other on free ports, in start order: user, payment,
/// notification (only with `nats_url`), order, frontend. Each sends its spans to
/// `collector(service)` (an ingest base URL; `service` is `"user"`, `"order"`, …) with a
/// 100 ms batch delay; the frontend links to the UI at `ui_url`; `NATS_URL` is `nats_url`, or
/// empty (no messaging). `extra_env(service)` wins over these.
pub fn demo_services(
    collector: impl Fn(&str) -> String,
    ui_url: &str,
    nats_url: Option<&str>,
    extra_env: impl Fn(&str) -> Vec<(&'static str, String)>,
) -> Vec<ServiceSpec> {
    let [fe, us, os, ps, ns] = [(); 5].map(|()| free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    type Env = Vec<(&'static str, String)>;
    let mut services: Vec<(&'static str, &str, u16, Env)> = vec![
        ("user-service", "user", us, vec![]),
        ("payment-service", "payment", ps, vec![]),
        (
            "order-service",
            "order",
            os,
            vec![("PAYMENT_SERVICE_URL", url(ps))],
        ),
        (
            "frontend",
            "frontend",
            fe,
            vec![
                ("USER_SERVICE_URL", url(us)),
                ("ORDER_SERVICE_URL", url(os)),
                ("COLLECTOR_UI_URL", ui_url.to_owned()),
            ],
        ),
    ];
    if nats_url.is_some() {
        services.insert(2, ("notification-service", "notification", ns, vec![]));
    }
    services
        .into_iter()
        .map(|(bin, svc, port, extra)| {
            let mut env = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector(svc)),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
                ("OTEL_SERVICE_NAME", svc.to_owned()),
                ("NATS_URL", nats_url.unwrap_or_default().to_owned()),
                ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ];
            env.extend(extra);
            env.extend(extra_env(svc));
            ServiceSpec { bin, port, env }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var<'a>(services: &'a [ServiceSpec], bin: &str, key: &str) -> &'a str {
        let spec = services.iter().find(|s| s.bin == bin).unwrap();
        let (_, value) = spec.env.iter().rev().find(|(k, _)| *k == key).unwrap();
        value
    }

    #[test]
    fn a_moved_service_listens_on_its_new_port_and_its_callers_are_told() {
        let mut services = demo_services(
            |_| "http://127.0.0.1:4318".to_owned(),
            "http://127.0.0.1:16686",
            Some("nats://127.0.0.1:4222"),
            |_| Vec::new(),
        );
        let payment_before = var(&services, "order-service", "PAYMENT_SERVICE_URL").to_owned();
        let url = move_service(&mut services, "user-service", 40_001).unwrap();
        assert_eq!(url, "http://127.0.0.1:40001");
        assert_eq!(
            var(&services, "user-service", "LISTEN_ADDR"),
            "127.0.0.1:40001"
        );
        assert_eq!(var(&services, "frontend", "USER_SERVICE_URL"), url);
        // Nothing else changed.
        assert_eq!(
            var(&services, "order-service", "PAYMENT_SERVICE_URL"),
            payment_before
        );
        assert_eq!(
            var(&services, "frontend", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            "http://127.0.0.1:4318"
        );
        assert_eq!(move_service(&mut services, "no-such-service", 40_002), None);
    }
}
