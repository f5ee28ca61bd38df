//! The harness's children and their ports: a foreign server answering on a child's port is
//! never taken for the child, the child's failed start says its port was taken, and on a
//! new port it starts.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use spanline_e2e::{StartError, demo_services, free_port};

/// Answers every request on `listener` with `200 ok`, as a demo service's `/healthz` would,
/// on a thread of its own until the test process ends.
fn serve_foreign(listener: TcpListener) {
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
}

#[tokio::test]
async fn a_service_whose_port_another_server_holds_is_not_ready_there_and_starts_on_a_new_port() {
    let taken = free_port();
    serve_foreign(TcpListener::bind(("127.0.0.1", taken)).unwrap());
    let collector = format!("http://127.0.0.1:{}", free_port());
    // No spans: nothing to flush to the absent collector at the stop.
    let no_spans = |_: &str| vec![("OTEL_TRACES_SAMPLER", "always_off".to_owned())];
    let services = demo_services(|_| collector.clone(), &collector, None, no_spans);
    let mut user = services
        .into_iter()
        .find(|s| s.bin == "user-service")
        .unwrap();
    user.set_port(taken);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The foreign server answers /healthz with 200 all along; the start must still fail,
    // and say why.
    match user.try_start(&client, dir.path()).await {
        Err(StartError::PortTaken { port, log, .. }) => {
            assert_eq!(port, taken);
            assert!(log.contains("Address already in use"), "{log}");
        }
        Err(other) => panic!("expected PortTaken, got {other}"),
        Ok(_) => panic!("the foreign server on {taken} was taken for user-service"),
    }

    user.set_port(free_port());
    let mut proc = user.try_start(&client, dir.path()).await.unwrap();
    assert!(demokit::ports::listens(proc.pid(), user.port));
    let answer = client
        .get(format!("{}/users/1", user.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", proc.log());
    assert_eq!(proc.terminate(Duration::from_secs(10)), Some(0));
}
