//! Messages JetStream gave up on. When a consumer does not acknowledge a message within
//! `max_deliver` deliveries (it kept failing, never answered within `ack_wait`, or died
//! mid-way each time), JetStream stops redelivering it and says so only in an advisory on
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`, a JSON object naming
//! the message by `stream_seq` with its `deliveries` (NATS JetStream advisories,
//! `io.nats.jetstream.advisory.v1.max_deliver`). Advisories are core NATS messages: a
//! service that is not subscribed when one is sent never sees it.
//!
//! [`Queue::on_gave_up`] subscribes to the advisory of one durable consumer, reads the
//! message back from the stream by its sequence (`STREAM.MSG.GET`, which every JetStream
//! server answers; direct get would need the stream's `allow_direct`), and runs a handler in
//! an INTERNAL span `gave up <subject>` whose parent is the message's creation context (its
//! `traceparent`), so the message's own trace shows why its flow ended. INTERNAL, not
//! CONSUMER: the span is no delivery, and a CONSUMER span would make the collector expect
//! this service's group on the subject for every later message.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use tracekit::messaging::{CONSUMER_GROUP_NAME, DELIVERY_COUNT, DESTINATION_NAME, SYSTEM};
use tracekit::{Context, SharedSpan, SpanKind};

use crate::error::AppError;
use crate::queue::{Queue, STREAM, consumer_name, retry};

/// The attribute of a `gave up` span holding the message's stream sequence.
pub const STREAM_SEQUENCE: &str = "messaging.nats.stream.sequence";

/// A message JetStream stopped redelivering to a consumer.
#[derive(Debug, Clone)]
pub struct GaveUp {
    /// The message body, as published.
    pub payload: Bytes,
    /// Its sequence in [`STREAM`].
    pub stream_seq: u64,
    /// How many times it was delivered before JetStream gave up.
    pub deliveries: i64,
}

/// The part of a max-deliveries advisory read here.
#[derive(Debug, Deserialize)]
struct Advisory {
    stream_seq: u64,
    deliveries: i64,
}

/// Why an advisory could not be turned into a [`GaveUp`].
#[derive(Debug, thiserror::Error)]
enum AdvisoryError {
    #[error("unreadable max-deliveries advisory: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot read message {seq} of stream {STREAM}: {message}")]
    Fetch { seq: u64, message: String },
}

/// The advisory subject JetStream publishes on when `consumer` of [`STREAM`] gives up on a
/// message.
pub fn max_deliveries_subject(consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.{consumer}")
}

impl Queue {
    /// For as long as the process runs, calls `handler` for each message of `subject` that
    /// the durable consumer of `group` (another service's, e.g. `payment`) stopped
    /// redelivering, inside an INTERNAL span `gave up <subject>` in the message's trace
    /// (attributes: `messaging.system`, `messaging.destination.name`,
    /// `messaging.consumer.group.name` = `group`, the delivery count and
    /// [`STREAM_SEQUENCE`]). An `Err` from the handler is the span's error. Nothing happens
    /// when messaging is off.
    pub fn on_gave_up<F, Fut>(&self, group: &'static str, subject: &'static str, handler: F)
    where
        F: Fn(GaveUp) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), AppError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.spawn_connected(move |queue, js, service| async move {
            let advisories = max_deliveries_subject(&consumer_name(group, subject));
            let client = js.client();
            // Core subscriptions survive reconnects: one is enough.
            let mut subscription = retry(&service, "subscribe to advisories", || async {
                client
                    .subscribe(advisories.clone())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            while let Some(advisory) = subscription.next().await {
                let queue = queue.clone();
                let js = js.clone();
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let gave_up = match read_advisory(&js, &advisory.payload).await {
                        Ok(g) => g,
                        Err(e) => {
                            eprintln!("{}: {subject}: {e}", queue.telemetry().service_name());
                            return;
                        }
                    };
                    let (gave_up, headers) = gave_up;
                    queue
                        .run_gave_up(group, subject, gave_up, &headers, &*handler)
                        .await;
                });
            }
        });
    }

    /// Runs `handler` in the `gave up <subject>` span (see [`on_gave_up`](Self::on_gave_up)).
    async fn run_gave_up<F, Fut>(
        &self,
        group: &'static str,
        subject: &'static str,
        gave_up: GaveUp,
        headers: &async_nats::HeaderMap,
        handler: &F,
    ) where
        F: Fn(GaveUp) -> Fut,
        Fut: Future<Output = Result<(), AppError>>,
    {
        let telemetry = self.telemetry();
        let extracted = telemetry.propagator.extract_from(headers);
        let span = telemetry
            .tracer
            .span(format!("gave up {subject}"))
            .kind(SpanKind::Internal)
            .parent(extracted.parent)
            .attribute(SYSTEM, "nats")
            .attribute(DESTINATION_NAME, subject)
            .attribute(CONSUMER_GROUP_NAME, group)
            .attribute(DELIVERY_COUNT, gave_up.deliveries)
            .attribute(
                STREAM_SEQUENCE,
                i64::try_from(gave_up.stream_seq).unwrap_or(i64::MAX),
            )
            .start();
        let span = SharedSpan::new(span);
        let cx = Context::new(None, extracted.baggage).with_span(span.clone());
        if let Err(e) = cx.scope(handler(gave_up)).await {
            span.set_attribute("error.type", "process");
            span.with(|s| s.record_error(&e));
        }
        span.end();
    }
}

/// Parses an advisory and reads its message back from [`STREAM`].
async fn read_advisory(
    js: &async_nats::jetstream::Context,
    payload: &[u8],
) -> Result<(GaveUp, async_nats::HeaderMap), AdvisoryError> {
    let advisory: Advisory = serde_json::from_slice(payload)?;
    let seq = advisory.stream_seq;
    let fetch_error = |message: String| AdvisoryError::Fetch { seq, message };
    let stream = js
        .get_stream(STREAM)
        .await
        .map_err(|e| fetch_error(e.to_string()))?;
    let message = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| fetch_error(e.to_string()))?;
    let gave_up = GaveUp {
        payload: message.payload,
        stream_seq: seq,
        deliveries: advisory.deliveries,
    };
    Ok((gave_up, message.headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advisory_subject_names_the_stream_and_the_durable_consumer() {
        assert_eq!(
            max_deliveries_subject(&consumer_name("payment", "payments.requested")),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.PAYMENTS.payment-payments-requested"
        );
    }

    #[test]
    fn an_advisory_as_nats_server_sends_it_parses() {
        let body = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x",
            "timestamp":"2026-12-02T16:00:00Z","stream":"PAYMENTS",
            "consumer":"payment-payments-requested","stream_seq":42,"deliveries":3}"#;
        let a: Advisory = serde_json::from_slice(body).unwrap();
        assert_eq!((a.stream_seq, a.deliveries), (42, 3));
        assert!(serde_json::from_slice::<Advisory>(b"{}").is_err());
    }
}
