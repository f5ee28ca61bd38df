//! The demo's message queue: NATS JetStream (DESIGN §2-3), with the trace context in the
//! message headers (`tracekit::messaging`).
//!
//! One stream, [`STREAM`], holds the subjects `payments.>`. Each consuming service reads a
//! subject through its own durable pull consumer, `<group>-<subject with - for .>`, created
//! at start (idempotently: an existing stream or consumer with the same configuration is
//! reused). A failed process is nak'ed and redelivered up to [`MAX_DELIVER`] deliveries in
//! all (`NATS_MAX_DELIVER`); a message not acknowledged within [`ACK_WAIT`]
//! (`NATS_ACK_WAIT_MS`) is redelivered too. When JetStream gives up on a message it only
//! publishes an advisory: [`Queue::on_gave_up`] turns that into a call with the message
//! (see `gave_up.rs`).
//!
//! The connection is made in the background and retried, so a service starts (and answers
//! synchronous requests) while NATS is down; a publish then fails after [`ACK_TIMEOUT`] as
//! an error PRODUCER span.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tracekit::Context;
use tracekit::messaging::{NatsConsumer, NatsPublisher, PublishError};

use crate::error::AppError;
use crate::telemetry::Telemetry;

/// The stream holding every demo subject.
pub const STREAM: &str = "PAYMENTS";
/// Order → payment: charge this order (asynchronous orders).
pub const PAYMENTS_REQUESTED: &str = "payments.requested";
/// Payment → order, notification: the payment was captured.
pub const PAYMENTS_COMPLETED: &str = "payments.completed";
/// Payment → order, notification: the payment was declined.
pub const PAYMENTS_DECLINED: &str = "payments.declined";
/// Payment → order: the payment could not be processed at all; sent by payment on the last
/// delivery of a `payments.requested` message ([`MAX_DELIVER`]), so an asynchronous order
/// ends `failed` instead of staying `pending`.
pub const PAYMENTS_FAILED: &str = "payments.failed";
/// The default `NATS_URL`.
pub const DEFAULT_NATS_URL: &str = "nats://localhost:4222";
/// How long a publish waits for the stream's acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Deliveries of one message at most (the first and the redeliveries after a nak).
pub const MAX_DELIVER: i64 = 3;
/// How long JetStream waits before redelivering a nak'ed message.
pub const NAK_DELAY: Duration = Duration::from_millis(200);
/// How long JetStream waits for an ack before redelivering (a consumer that died mid-way).
pub const ACK_WAIT: Duration = Duration::from_secs(10);

/// The NATS flags of every service that publishes or consumes.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server with JetStream, for the asynchronous flow (empty: no messaging).
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// How long JetStream waits for a consumer's ack before redelivering, ms (the
    /// `ack_wait` of the durable consumers this service creates).
    #[arg(long, env = "NATS_ACK_WAIT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub nats_ack_wait_ms: u64,
    /// Deliveries of one message at most, the first included (the `max_deliver` of the
    /// durable consumers this service creates).
    #[arg(long, env = "NATS_MAX_DELIVER", default_value_t = MAX_DELIVER,
          value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub nats_max_deliver: i64,
}

/// How the durable consumers a [`Queue`] creates redeliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redelivery {
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Deliveries of one message at most, the first included (≥ 1).
    pub max_deliver: i64,
}

impl Default for Redelivery {
    fn default() -> Redelivery {
        Redelivery {
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER,
        }
    }
}

impl NatsArgs {
    /// The redelivery settings from the flags.
    pub fn redelivery(&self) -> Redelivery {
        Redelivery {
            ack_wait: Duration::from_millis(self.nats_ack_wait_ms),
            max_deliver: self.nats_max_deliver.max(1),
        }
    }
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Messaging is off (`NATS_URL` empty).
    #[error("messaging is off (NATS_URL is empty)")]
    Off,
    /// The client did not start within the ack timeout (the runtime is shutting down).
    #[error("not connected to NATS")]
    NotConnected,
    /// The publish failed (see the PRODUCER span).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl From<QueueError> for AppError {
    fn from(e: QueueError) -> AppError {
        AppError::unavailable(format!("message queue unavailable: {e}"))
    }
}

/// A service's handle on the queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Queue {
    telemetry: Telemetry,
    /// `None` until the client exists (at once: it connects in the background); never set
    /// when messaging is off.
    js: watch::Receiver<Option<jetstream::Context>>,
    off: bool,
    redelivery: Redelivery,
}

impl Queue {
    /// Starts connecting to `url` in the background (retrying until NATS answers, then
    /// creating [`STREAM`]). An empty `url` turns messaging off: publishes fail with
    /// [`QueueError::Off`] and consumers never start. Must run inside a tokio runtime.
    pub fn start(url: &str, telemetry: &Telemetry) -> Queue {
        Queue::start_with(url, Redelivery::default(), telemetry)
    }

    /// [`start`](Self::start) from the service's flags: `NATS_URL` and the redelivery
    /// settings of the consumers it creates.
    pub fn from_args(args: &NatsArgs, telemetry: &Telemetry) -> Queue {
        Queue::start_with(&args.nats_url, args.redelivery(), telemetry)
    }

    /// [`start`](Self::start) with the given redelivery settings.
    pub fn start_with(url: &str, redelivery: Redelivery, telemetry: &Telemetry) -> Queue {
        let (tx, rx) = watch::channel(None);
        let off = url.trim().is_empty();
        if !off {
            let url = url.trim().to_owned();
            let service = telemetry.service_name().to_owned();
            tokio::spawn(async move {
                let options = async_nats::ConnectOptions::new()
                    .name(service.clone())
                    .retry_on_initial_connect();
                let client = match options.connect(url.as_str()).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{service}: cannot use NATS_URL {url}: {e}");
                        return;
                    }
                };
                let js = jetstream::new(client);
                // Publishers may go now (a publish before the stream exists, or while NATS
                // is down, is an error span); consumers retry until the stream exists.
                let _ = tx.send(Some(js.clone()));
                retry(&service, "create stream", || ensure_stream(&js)).await;
            });
        }
        Queue {
            telemetry: telemetry.clone(),
            js: rx,
            off,
            redelivery,
        }
    }

    /// The service's telemetry.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Whether messaging is on (`NATS_URL` not empty).
    pub fn is_on(&self) -> bool {
        !self.off
    }

    async fn context(&self) -> Result<jetstream::Context, QueueError> {
        if self.off {
            return Err(QueueError::Off);
        }
        let mut rx = self.js.clone();
        let ready = tokio::time::timeout(ACK_TIMEOUT, rx.wait_for(Option::is_some)).await;
        match ready {
            Ok(Ok(js)) => js.clone().ok_or(QueueError::NotConnected),
            _ => Err(QueueError::NotConnected),
        }
    }

    /// Publishes `payload` to `subject` in a PRODUCER span (child of the current span, with
    /// the current baggage) and waits for the stream's ack (at most [`ACK_TIMEOUT`]).
    ///
    /// # Errors
    /// [`QueueError`]; a failed publish is also an error span.
    pub async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<u64, QueueError> {
        let js = self.context().await?;
        let publisher = NatsPublisher::new(
            js,
            self.telemetry.tracer.clone(),
            self.telemetry.propagator,
            ACK_TIMEOUT,
        );
        Ok(publisher.publish(subject, Bytes::from(payload)).await?)
    }

    /// [`publish`](Self::publish) in a task of its own, off the request path: the caller
    /// never waits and never fails because of it. The PRODUCER span is still a child of the
    /// current span; a failure is that span's error and a line on stderr.
    pub fn publish_detached(&self, subject: &'static str, payload: Vec<u8>) {
        if self.off {
            return;
        }
        let queue = self.clone();
        let cx = Context::current();
        tokio::spawn(cx.scope(async move {
            if let Err(e) = queue.publish(subject, payload).await {
                eprintln!("{}: {e}", queue.telemetry.service_name());
            }
        }));
    }

    /// Consumes `subject` as consumer group `group` (its durable consumer is created at
    /// start) for as long as the process runs: each message is processed by `handler` in a
    /// CONSUMER span (see `tracekit::messaging::NatsConsumer::handle`), concurrently; an
    /// `Err` naks it for redelivery (at most [`Redelivery::max_deliver`] deliveries).
    pub fn consume<F, Fut>(&self, group: &'static str, subject: &'static str, handler: F)
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), AppError>> + Send + 'static,
    {
        self.consume_deliveries(group, subject, move |d: Delivery| handler(d.payload));
    }

    /// [`consume`](Self::consume) with the handler told which delivery of the message this
    /// is ([`Delivery`]), so it can give up cleanly on the last one.
    pub fn consume_deliveries<F, Fut>(&self, group: &'static str, subject: &'static str, handler: F)
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), AppError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.spawn_connected(move |queue, js, service| async move {
            let redelivery = queue.redelivery;
            let processor = NatsConsumer::new(
                queue.telemetry.tracer.clone(),
                queue.telemetry.propagator,
                group,
                NAK_DELAY,
            );
            loop {
                let consumer = retry(&service, "create consumer", || {
                    durable_consumer(&js, group, subject, redelivery)
                })
                .await;
                let mut messages = match consumer.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("{service}: consume {subject}: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                while let Some(next) = messages.next().await {
                    let Ok(message) = next else {
                        // Heartbeats missed (NATS restarting): keep pulling.
                        continue;
                    };
                    let processor = processor.clone();
                    let handler = Arc::clone(&handler);
                    let service = service.clone();
                    let attempt = message.info().map_or(1, |i| i.delivered);
                    tokio::spawn(async move {
                        let handled = processor
                            .handle(&message, |payload| {
                                handler(Delivery {
                                    payload,
                                    attempt,
                                    max_deliver: redelivery.max_deliver,
                                })
                            })
                            .await;
                        if let Err(e) = handled {
                            eprintln!("{service}: {e}");
                        }
                    });
                }
            }
        });
    }

    /// Runs `task` in a task of its own once the client exists (waiting without limit),
    /// given a clone of this queue, the JetStream context and the service's name. Nothing
    /// runs when messaging is off, or when the client is never made (a bad `NATS_URL`).
    pub(crate) fn spawn_connected<T, Fut>(&self, task: T)
    where
        T: FnOnce(Queue, jetstream::Context, String) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.off {
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            let mut rx = queue.js.clone();
            let js = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|js| js.clone());
            let Some(js) = js else { return };
            let service = queue.telemetry.service_name().to_owned();
            task(queue, js, service).await;
        });
    }
}

/// One delivery of a message to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message body.
    pub payload: Bytes,
    /// Which delivery this is: 1 for the first, up to `max_deliver`
    /// (`messaging.nats.message.delivery_count`).
    pub attempt: i64,
    /// The consumer's deliveries at most ([`Redelivery::max_deliver`]).
    pub max_deliver: i64,
}

impl Delivery {
    /// Whether JetStream will not redeliver this message after a failure (the attempt is
    /// the `max_deliver`th, or later).
    pub fn is_last(&self) -> bool {
        self.attempt >= self.max_deliver
    }
}

/// Creates [`STREAM`] on `payments.>` unless it exists.
async fn ensure_stream(js: &jetstream::Context) -> Result<(), String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["payments.>".to_owned()],
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The name of the durable consumer of `group` on `subject`: `<group>-<subject with - for .>`
/// (e.g. `payment-payments-requested`).
pub fn consumer_name(group: &str, subject: &str) -> String {
    format!("{group}-{}", subject.replace('.', "-"))
}

/// The durable pull consumer of `group` on `subject`, created unless it exists.
async fn durable_consumer(
    js: &jetstream::Context,
    group: &str,
    subject: &str,
    redelivery: Redelivery,
) -> Result<jetstream::consumer::PullConsumer, String> {
    let name = consumer_name(group, subject);
    let stream = js.get_stream(STREAM).await.map_err(|e| e.to_string())?;
    stream
        .get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subject.to_owned(),
                max_deliver: redelivery.max_deliver,
                ack_wait: redelivery.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// Runs `step` until it succeeds, every 500 ms, saying on stderr why the first try failed.
pub(crate) async fn retry<T, Fut>(service: &str, what: &str, step: impl Fn() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    let mut said = false;
    loop {
        match step().await {
            Ok(t) => return t,
            Err(e) => {
                if !said {
                    eprintln!("{service}: NATS: cannot {what} yet ({e}); retrying");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracekit::SpanKind;

    #[tokio::test]
    async fn with_nats_unreachable_from_the_start_a_publish_is_an_error_producer_span() {
        let (telemetry, exporter) = Telemetry::in_memory("payment");
        // Port 9 (discard): nothing listens there.
        let queue = Queue::start("nats://127.0.0.1:9", &telemetry);
        let err = queue.publish(PAYMENTS_COMPLETED, b"{}".to_vec()).await;
        assert!(matches!(err, Err(QueueError::Publish(_))), "{err:?}");
        let spans = exporter.finished_spans();
        let producer = spans
            .iter()
            .find(|s| s.kind == SpanKind::Producer)
            .expect("a PRODUCER span");
        assert_eq!(producer.name, "publish payments.completed");
        assert!(producer.status.is_error());
    }

    #[tokio::test]
    async fn an_empty_url_turns_messaging_off() {
        let (telemetry, exporter) = Telemetry::in_memory("payment");
        let queue = Queue::start("", &telemetry);
        assert!(!queue.is_on());
        let err = queue.publish(PAYMENTS_COMPLETED, Vec::new()).await;
        assert!(matches!(err, Err(QueueError::Off)));
        queue.publish_detached(PAYMENTS_COMPLETED, Vec::new());
        assert!(exporter.finished_spans().is_empty());
    }
}
