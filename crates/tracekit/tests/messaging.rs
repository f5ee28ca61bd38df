//! Messaging spans over a real nats-server with JetStream (started here on a free port by
//! `scripts/nats.sh`). Without nats-server the tests are skipped, except under `CI=true`,
//! where a missing server fails them.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tracekit::export::InMemoryExporter;
use tracekit::messaging::{
    CONSUMER_GROUP_NAME, DELIVERY_COUNT, DESTINATION_NAME, MESSAGE_ID, NatsConsumer, NatsPublisher,
    OPERATION_TYPE, PublishError,
};
use tracekit::propagation::{Baggage, Propagator};
use tracekit::{Context, Resource, Sampler, SpanData, SpanKind, Tracer, Value};

struct Server {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nats-server -js on a free port, or `None` (skip) when it is not installed outside CI.
async fn nats_server() -> Option<Server> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/nats.sh");
    let found = Command::new("bash")
        .args([script, "--path"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nats-server is required under CI=true"
        );
        eprintln!("skipped: nats-server not installed");
        return None;
    }
    // Port 0: the server binds a free port itself and names it in its ports file
    // (`<binary>_<pid>.ports` in the store directory; the script execs the server, so the
    // pid is the child's), which it writes once it listens.
    let store = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .args([script, "0"])
        .env("NATS_STORE_DIR", store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let suffix = format!("_{}.ports", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        let reported = std::fs::read_dir(store.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .and_then(|text| {
                let after = text.split("nats://").nth(1)?.split('"').next()?;
                after.rsplit_once(':')?.1.parse::<u16>().ok()
            });
        if let Some(port) = reported {
            break port;
        }
        assert!(child.try_wait().unwrap().is_none(), "nats-server exited");
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let url = format!("nats://127.0.0.1:{port}");
    Some(Server {
        child,
        url,
        _store: store,
    })
}

fn tracer(service: &'static str, exporter: &InMemoryExporter) -> Tracer {
    Tracer::builder(Resource::new(service, None, []))
        .with_sampler(Sampler::AlwaysOn)
        .with_processor(exporter.clone())
        .build()
}

fn attr<'a>(s: &'a SpanData, key: &str) -> &'a Value {
    s.attribute(key)
        .unwrap_or_else(|| panic!("span {:?} has no {key}", s.name))
}

async fn setup(
    url: &str,
    max_deliver: i64,
) -> (jetstream::Context, jetstream::consumer::PullConsumer) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "TEST".into(),
            subjects: vec!["test.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .get_or_create_consumer(
            "mailer",
            jetstream::consumer::pull::Config {
                durable_name: Some("mailer".into()),
                filter_subject: "test.done".into(),
                max_deliver,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (js, consumer)
}

#[tokio::test]
async fn a_processed_message_is_a_consumer_span_under_its_producer_with_a_link_and_the_baggage() {
    let Some(server) = nats_server().await else {
        return;
    };
    let (js, consumer) = setup(&server.url, 3).await;
    let exporter = InMemoryExporter::default();
    let producer = tracer("payment", &exporter);
    let publisher = NatsPublisher::new(
        js,
        producer.clone(),
        Propagator::default(),
        Duration::from_secs(5),
    );

    let root = producer
        .span("POST /payments")
        .kind(SpanKind::Server)
        .start();
    let root_cx = root.context().clone();
    let baggage = Baggage::default()
        .insert("sim.delay.notification", "5")
        .unwrap();
    let seq = Context::new(Some(root_cx.clone()), baggage)
        .scope(publisher.publish("test.done", "hello".into()))
        .await
        .unwrap();
    assert_eq!(seq, 1);
    root.end();

    let processor = NatsConsumer::new(
        tracer("notification", &exporter),
        Propagator::default(),
        "notification",
        Duration::from_millis(50),
    );
    let mut messages = consumer.messages().await.unwrap();
    let message = messages.next().await.unwrap().unwrap();
    let seen = processor
        .handle(&message, |payload| async move {
            let delay = Context::current()
                .baggage()
                .get("sim.delay.notification")
                .map(str::to_owned);
            assert_eq!(&payload[..], b"hello");
            assert_eq!(delay.as_deref(), Some("5"));
            Ok::<(), std::io::Error>(())
        })
        .await
        .unwrap();
    assert!(seen);

    let spans = exporter.finished_spans();
    let publish = spans.iter().find(|s| s.kind == SpanKind::Producer).unwrap();
    let process = spans.iter().find(|s| s.kind == SpanKind::Consumer).unwrap();
    assert_eq!(publish.name, "publish test.done");
    assert_eq!(publish.parent_span_id, root_cx.span_id);
    assert_eq!(attr(publish, "messaging.system"), &Value::from("nats"));
    assert_eq!(attr(publish, DESTINATION_NAME), &Value::from("test.done"));
    assert_eq!(attr(publish, OPERATION_TYPE), &Value::from("send"));
    assert_eq!(
        attr(publish, "messaging.message.body.size"),
        &Value::from(5i64)
    );

    assert_eq!(process.name, "process test.done");
    assert_eq!(process.trace_id, publish.trace_id);
    assert_eq!(process.parent_span_id, publish.span_id);
    assert!(process.parent_is_remote);
    assert_eq!(process.links.len(), 1);
    assert_eq!(process.links[0].span_id, publish.span_id);
    assert_eq!(attr(process, OPERATION_TYPE), &Value::from("process"));
    assert_eq!(
        attr(process, CONSUMER_GROUP_NAME),
        &Value::from("notification")
    );
    assert_eq!(attr(process, DELIVERY_COUNT), &Value::from(1i64));
    assert_eq!(attr(process, MESSAGE_ID), attr(publish, MESSAGE_ID));
}

#[tokio::test]
async fn a_failed_process_is_nakd_and_each_delivery_is_its_own_span_up_to_max_deliver() {
    let Some(server) = nats_server().await else {
        return;
    };
    let (js, consumer) = setup(&server.url, 2).await;
    let exporter = InMemoryExporter::default();
    let t = tracer("notification", &exporter);
    let publisher =
        NatsPublisher::new(js, t.clone(), Propagator::default(), Duration::from_secs(5));
    publisher.publish("test.done", "x".into()).await.unwrap();
    let processor = NatsConsumer::new(
        t,
        Propagator::default(),
        "notification",
        Duration::from_millis(20),
    );
    let mut messages = consumer.messages().await.unwrap();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("redelivered")
            .unwrap()
            .unwrap();
        let ok = processor
            .handle(&message, |_| async {
                Err(std::io::Error::other("smtp down"))
            })
            .await
            .unwrap();
        assert!(!ok);
    }
    // max_deliver = 2: no third delivery.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), messages.next())
            .await
            .is_err()
    );
    let process: Vec<SpanData> = exporter
        .finished_spans()
        .into_iter()
        .filter(|s| s.kind == SpanKind::Consumer)
        .collect();
    let counts: Vec<&Value> = process.iter().map(|s| attr(s, DELIVERY_COUNT)).collect();
    assert_eq!(counts, [&Value::from(1i64), &Value::from(2i64)]);
    assert!(process.iter().all(|s| s.status.is_error()));
    assert_eq!(process[0].parent_span_id, process[1].parent_span_id);
}

#[tokio::test]
async fn a_publish_without_a_server_is_an_error_span_within_the_ack_timeout() {
    let Some(server) = nats_server().await else {
        return;
    };
    let (js, _consumer) = setup(&server.url, 1).await;
    drop(server);
    let exporter = InMemoryExporter::default();
    let publisher = NatsPublisher::new(
        js,
        tracer("payment", &exporter),
        Propagator::default(),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let err = publisher
        .publish("test.done", "x".into())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the ack timeout"
    );
    assert!(
        matches!(
            err,
            PublishError::Timeout { .. } | PublishError::Publish { .. }
        ),
        "{err}"
    );
    let spans = exporter.finished_spans();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].status.is_error());
    assert!(spans[0].attribute("error.type").is_some());
}
