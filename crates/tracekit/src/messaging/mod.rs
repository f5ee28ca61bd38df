//! Messaging spans (OpenTelemetry semantic conventions for messaging spans): a PRODUCER
//! span per published message and a CONSUMER span per processed message, with the trace
//! context travelling in the message headers. Built on NATS JetStream (`async-nats`);
//! behind the cargo feature `nats`.
//!
//! * [`NatsPublisher::publish`] — PRODUCER span `publish <subject>`, a child of the current
//!   span; writes `traceparent`, `tracestate` and `baggage` (and a `Nats-Msg-Id`, the
//!   `messaging.message.id`) into the message headers, then waits for the stream's ack
//!   (bounded). A failure is an error span and an error for the caller.
//! * [`NatsConsumer::handle`] — CONSUMER span `process <subject>` whose parent is the
//!   message's creation context (one message per span, as the conventions allow) and which
//!   also links to it; runs the handler with that span current and the message's baggage;
//!   acks on success, naks (redelivery after a delay) on failure. Each delivery of a
//!   message is its own process span carrying its delivery count.
//!
//! Header names are read ignoring case ([`Extractor`]).

mod nats;

pub use nats::{ConsumerError, NatsConsumer, NatsPublisher, PublishError};

/// `messaging.system`: always `nats` here.
pub const SYSTEM: &str = "messaging.system";
/// `messaging.destination.name`: the subject.
pub const DESTINATION_NAME: &str = "messaging.destination.name";
/// `messaging.operation.name`: `publish` or `process`.
pub const OPERATION_NAME: &str = "messaging.operation.name";
/// `messaging.operation.type`: `send` or `process`.
pub const OPERATION_TYPE: &str = "messaging.operation.type";
/// `messaging.message.id`: the publisher's `Nats-Msg-Id` (JetStream's de-duplication id).
pub const MESSAGE_ID: &str = "messaging.message.id";
/// `messaging.consumer.group.name`: the consuming service's group (its durable consumers).
pub const CONSUMER_GROUP_NAME: &str = "messaging.consumer.group.name";
/// `messaging.message.body.size`: the payload size, bytes.
pub const BODY_SIZE: &str = "messaging.message.body.size";
/// `messaging.nats.message.delivery_count`: which delivery of the message this process span
/// handled (1 = first; a system-specific attribute under the `messaging.nats.` namespace).
pub const DELIVERY_COUNT: &str = "messaging.nats.message.delivery_count";

use crate::propagation::Extractor;
