//! The NATS JetStream publisher and consumer (see the module docs of [`super`]).

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::AckKind;
use bytes::Bytes;

use super::{
    BODY_SIZE, CONSUMER_GROUP_NAME, DELIVERY_COUNT, DESTINATION_NAME, Extractor, MESSAGE_ID,
    OPERATION_NAME, OPERATION_TYPE, SYSTEM,
};
use crate::context::Context;
use crate::id::SpanId;
use crate::propagation::{Injector, Propagator};
use crate::span::{Link, SharedSpan, SpanKind};
use crate::tracer::Tracer;

/// The JetStream header naming a message for de-duplication; also its `messaging.message.id`.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

impl Injector for async_nats::HeaderMap {
    fn set(&mut self, name: &str, value: &str) {
        Injector::remove(self, name);
        self.insert(name, value);
    }

    fn remove(&mut self, name: &str) {
        if !self
            .iter()
            .any(|(n, _)| AsRef::<str>::as_ref(n).eq_ignore_ascii_case(name))
        {
            return;
        }
        // async-nats' map has no removal: rebuild it without `name`, keeping every value.
        let mut kept = async_nats::HeaderMap::new();
        for (n, values) in self.iter() {
            if AsRef::<str>::as_ref(n).eq_ignore_ascii_case(name) {
                continue;
            }
            for v in values {
                kept.append(n.clone(), v.clone());
            }
        }
        *self = kept;
    }
}

impl Extractor for async_nats::HeaderMap {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.iter()
            .filter(|(n, _)| AsRef::<str>::as_ref(*n).eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().map(|v| v.as_str().as_bytes()))
            .collect()
    }
}

/// Why a message was not published: the reason is also the PRODUCER span's error.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The server refused or could not take the message (no stream for the subject, no
    /// connection, ...).
    #[error("publish {subject}: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        source: jetstream::context::PublishError,
    },
    /// No acknowledgement from the stream within the publisher's ack timeout.
    #[error("publish {subject}: no acknowledgement within {timeout_ms} ms (is NATS running?)")]
    Timeout {
        /// The subject.
        subject: String,
        /// The ack timeout, ms.
        timeout_ms: u64,
    },
}

/// Publishes messages to JetStream inside PRODUCER spans. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsPublisher {
    js: jetstream::Context,
    tracer: Tracer,
    propagator: Propagator,
    ack_timeout: Duration,
}

impl NatsPublisher {
    /// A publisher on `js` whose spans go to `tracer`; a publish waits at most `ack_timeout`
    /// for the stream's acknowledgement.
    pub fn new(
        js: jetstream::Context,
        tracer: Tracer,
        propagator: Propagator,
        ack_timeout: Duration,
    ) -> NatsPublisher {
        NatsPublisher {
            js,
            tracer,
            propagator,
            ack_timeout,
        }
    }

    /// Publishes `payload` to `subject` in a PRODUCER span `publish <subject>` (a child of
    /// the current span, carrying the current baggage) and waits for the stream's ack.
    /// Returns the stream sequence of the stored message.
    ///
    /// # Errors
    /// [`PublishError`], also recorded on the span (status ERROR, `error.type`, exception).
    pub async fn publish(&self, subject: &str, payload: Bytes) -> Result<u64, PublishError> {
        let (parent, baggage) =
            Context::with_current(|cx| (cx.span_context().cloned(), cx.baggage().clone()));
        let message_id = SpanId::random().to_string();
        let mut span = self
            .tracer
            .span(format!("publish {subject}"))
            .kind(SpanKind::Producer)
            .parent(parent)
            .attribute(SYSTEM, "nats")
            .attribute(DESTINATION_NAME, subject.to_owned())
            .attribute(OPERATION_NAME, "publish")
            .attribute(OPERATION_TYPE, "send")
            .attribute(MESSAGE_ID, message_id.clone())
            .attribute(BODY_SIZE, payload.len() as i64)
            .start();
        let mut headers = async_nats::HeaderMap::new();
        self.propagator
            .inject_into(span.context(), &baggage, &mut headers);
        headers.insert(MSG_ID_HEADER, message_id.as_str());
        let send = async {
            self.js
                .publish_with_headers(subject.to_owned(), headers, payload)
                .await?
                .await
        };
        let result = match tokio::time::timeout(self.ack_timeout, send).await {
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(source)) => Err(PublishError::Publish {
                subject: subject.to_owned(),
                source,
            }),
            Err(_) => Err(PublishError::Timeout {
                subject: subject.to_owned(),
                timeout_ms: u64::try_from(self.ack_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        if let Err(e) = &result {
            let kind = match e {
                PublishError::Publish { .. } => "publish",
                PublishError::Timeout { .. } => "timeout",
            };
            span.set_attribute("error.type", kind);
            span.record_error(e);
        }
        result
    }
}

/// Why a processed message could not be settled (acked or nak'ed).
#[derive(Debug, thiserror::Error)]
#[error("settle message on {subject}: {message}")]
pub struct ConsumerError {
    /// The subject.
    pub subject: String,
    /// The client's error.
    pub message: String,
}

/// Processes JetStream messages inside CONSUMER spans for one consumer group. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsConsumer {
    tracer: Tracer,
    propagator: Propagator,
    group: Cow<'static, str>,
    nak_delay: Duration,
}

impl NatsConsumer {
    /// A consumer whose spans go to `tracer` and name `group` as
    /// `messaging.consumer.group.name`; a failed message is redelivered after `nak_delay`.
    pub fn new(
        tracer: Tracer,
        propagator: Propagator,
        group: impl Into<Cow<'static, str>>,
        nak_delay: Duration,
    ) -> NatsConsumer {
        NatsConsumer {
            tracer,
            propagator,
            group: group.into(),
            nak_delay,
        }
    }

    /// Processes one message: a CONSUMER span `process <subject>` whose parent is the
    /// context in the message's headers (and which links to it), made current for
    /// `handler` together with the message's baggage. `Ok` acks the message; `Err` records
    /// the error on the span and naks it, so JetStream redelivers it (bounded by the
    /// consumer's `max_deliver`). Returns whether the handler succeeded.
    ///
    /// # Errors
    /// [`ConsumerError`] when the ack or nak could not be sent.
    pub async fn handle<F, Fut, E>(
        &self,
        message: &jetstream::Message,
        handler: F,
    ) -> Result<bool, ConsumerError>
    where
        F: FnOnce(Bytes) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::error::Error,
    {
        let subject = message.subject.as_str();
        let extracted = match &message.headers {
            Some(h) => self.propagator.extract_from(h),
            None => Default::default(),
        };
        let message_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(MSG_ID_HEADER))
            .map(|v| v.as_str().to_owned());
        let info = message.info().ok();
        let mut builder = self
            .tracer
            .span(format!("process {subject}"))
            .kind(SpanKind::Consumer)
            .parent(extracted.parent.clone())
            .attribute(SYSTEM, "nats")
            .attribute(DESTINATION_NAME, subject.to_owned())
            .attribute(OPERATION_NAME, "process")
            .attribute(OPERATION_TYPE, "process")
            .attribute(CONSUMER_GROUP_NAME, self.group.clone())
            .attribute(BODY_SIZE, message.payload.len() as i64);
        if let Some(id) = message_id {
            builder = builder.attribute(MESSAGE_ID, id);
        }
        if let Some(info) = &info {
            builder = builder.attribute(DELIVERY_COUNT, info.delivered);
        }
        if let Some(p) = &extracted.parent {
            builder = builder.link(Link {
                trace_id: p.trace_id,
                span_id: p.span_id,
                trace_state: p.trace_state.clone(),
                trace_flags: p.trace_flags,
                attributes: Vec::new(),
            });
        }
        let span = SharedSpan::new(builder.start());
        let cx = Context::new(None, extracted.baggage).with_span(span.clone());
        let outcome = cx.scope(handler(message.payload.clone())).await;
        let ok = match outcome {
            Ok(()) => true,
            Err(e) => {
                span.set_attribute("error.type", "process");
                span.with(|s| s.record_error(&e));
                false
            }
        };
        let settled = if ok {
            message.ack().await
        } else {
            message.ack_with(AckKind::Nak(Some(self.nak_delay))).await
        };
        span.end();
        settled.map(|_| ok).map_err(|e| ConsumerError {
            subject: subject.to_owned(),
            message: e.to_string(),
        })
    }
}
