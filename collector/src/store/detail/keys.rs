//! The static table of attribute keys that a span's `detail` stores as a number instead of the
//! key's text ([`CompactAttribute`](super::CompactAttribute)): OpenTelemetry
//! semantic-convention keys, the stable ones first, then older names that instrumentations
//! still send.
//!
//! **Append only.** A key's code is its 1-based position in [`KEYS`] and is stored on disk
//! (SQLite `spans.detail`, ClickHouse `spans_local.detail`): never reorder, remove or rename an
//! entry; add new keys at the end. A collector that reads a code beyond its table (a row
//! written by a newer version) shows the key as `spanline.unknown_key_code.<code>`.

use crate::fast_hash::FastHashMap as HashMap;
use std::sync::LazyLock;

/// The keys with a code, code = index + 1. Codes 1–127 take one byte on disk, 128–16,383 two.
pub(crate) const KEYS: &[&str] = &[
    // 1–: HTTP, URL, server/client, network (semantic conventions, stable).
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "url.full",
    "url.path",
    "url.query",
    "url.scheme",
    "url.template",
    "server.address",
    "server.port",
    "client.address",
    "client.port",
    "user_agent.original",
    "network.protocol.name",
    "network.protocol.version",
    "network.peer.address",
    "network.peer.port",
    "network.local.address",
    "network.local.port",
    "network.transport",
    "network.type",
    "http.request.method_original",
    "http.request.resend_count",
    "http.request.body.size",
    "http.response.body.size",
    "http.request.size",
    "http.response.size",
    "error.type",
    "exception.type",
    "exception.message",
    "exception.stacktrace",
    "exception.escaped",
    "peer.service",
    "otel.status_code",
    "otel.status_description",
    "otel.scope.name",
    "otel.scope.version",
    // Databases.
    "db.system.name",
    "db.system",
    "db.namespace",
    "db.name",
    "db.collection.name",
    "db.operation.name",
    "db.operation",
    "db.query.text",
    "db.statement",
    "db.query.summary",
    "db.response.status_code",
    "db.user",
    "db.connection_string",
    "db.operation.batch.size",
    // RPC.
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "rpc.jsonrpc.version",
    "rpc.jsonrpc.request_id",
    "rpc.jsonrpc.error_code",
    "rpc.jsonrpc.error_message",
    // Messaging.
    "messaging.system",
    "messaging.operation.type",
    "messaging.operation.name",
    "messaging.operation",
    "messaging.destination.name",
    "messaging.destination.temporary",
    "messaging.destination.anonymous",
    "messaging.destination.partition.id",
    "messaging.destination.subscription.name",
    "messaging.consumer.group.name",
    "messaging.message.id",
    "messaging.message.conversation_id",
    "messaging.message.body.size",
    "messaging.message.envelope.size",
    "messaging.batch.message_count",
    "messaging.client.id",
    "messaging.kafka.message.key",
    "messaging.kafka.offset",
    "messaging.kafka.message.tombstone",
    "messaging.rabbitmq.destination.routing_key",
    "messaging.nats.stream.sequence",
    "messaging.nats.message.delivery_count",
    // Code and threads.
    "code.function.name",
    "code.function",
    "code.namespace",
    "code.file.path",
    "code.filepath",
    "code.line.number",
    "code.lineno",
    "code.column.number",
    "code.stacktrace",
    "thread.id",
    "thread.name",
    // Identity, sessions, features.
    "enduser.id",
    "enduser.role",
    "enduser.scope",
    "session.id",
    "session.previous_id",
    "user.id",
    "feature_flag.key",
    "feature_flag.provider.name",
    "feature_flag.result.variant",
    // Older HTTP and network names (semantic conventions before 1.21).
    "http.method",
    "http.status_code",
    "http.url",
    "http.target",
    "http.scheme",
    "http.host",
    "http.flavor",
    "http.user_agent",
    "http.client_ip",
    "http.server_name",
    "http.request_content_length",
    "http.response_content_length",
    "net.peer.name",
    "net.peer.port",
    "net.peer.ip",
    "net.host.name",
    "net.host.port",
    "net.host.ip",
    "net.transport",
    "net.sock.peer.addr",
    "net.sock.peer.port",
    "net.sock.host.addr",
    "net.protocol.name",
    "net.protocol.version",
    // Resource-like keys that also appear on spans, cloud, FaaS and others (codes from
    // `service.namespace` on take two bytes).
    "service.name",
    "service.version",
    "service.namespace",
    "service.instance.id",
    "deployment.environment.name",
    "deployment.environment",
    "host.name",
    "host.id",
    "host.arch",
    "os.type",
    "os.version",
    "process.pid",
    "process.executable.name",
    "process.command",
    "process.runtime.name",
    "process.runtime.version",
    "container.id",
    "container.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.deployment.name",
    "k8s.node.name",
    "k8s.container.name",
    "cloud.provider",
    "cloud.region",
    "cloud.availability_zone",
    "cloud.account.id",
    "cloud.platform",
    "cloud.resource_id",
    "faas.trigger",
    "faas.invocation_id",
    "faas.coldstart",
    "faas.name",
    "faas.version",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
    "graphql.operation.name",
    "graphql.operation.type",
    "graphql.document",
    "aws.region",
    "aws.request_id",
    "gen_ai.system",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
];

/// [`KEYS`] by key.
static CODES: LazyLock<HashMap<&'static str, u32>> = LazyLock::new(|| {
    KEYS.iter()
        .zip(1u32..)
        .map(|(key, code)| (*key, code))
        .collect()
});

/// The code of `key`, if it has one (1-based).
pub(crate) fn code_of(key: &str) -> Option<u32> {
    CODES.get(key).copied()
}

/// The key of `code`, if the table has it.
pub(crate) fn key_of(code: u32) -> Option<&'static str> {
    let index = usize::try_from(code.checked_sub(1)?).ok()?;
    KEYS.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_round_trip() {
        assert_eq!(CODES.len(), KEYS.len(), "a key is listed twice");
        for (i, key) in KEYS.iter().enumerate() {
            let code = code_of(key).expect("listed key has a code");
            assert_eq!(usize::try_from(code).unwrap(), i + 1);
            assert_eq!(key_of(code), Some(*key));
        }
        assert_eq!(key_of(0), None);
        assert_eq!(key_of(u32::try_from(KEYS.len()).unwrap() + 1), None);
        assert_eq!(code_of("app.item.id"), None);
    }

    /// Codes are stored on disk: these must never change (the table is append-only).
    #[test]
    fn codes_on_disk_are_pinned() {
        assert_eq!(code_of("http.request.method"), Some(1));
        assert_eq!(code_of("http.response.status_code"), Some(2));
        assert_eq!(code_of("user_agent.original"), Some(13));
        assert_eq!(code_of("error.type"), Some(28));
        assert_eq!(code_of("db.system.name"), Some(38));
        assert_eq!(code_of("messaging.system"), Some(60));
        assert_eq!(code_of("http.method"), Some(102));
        assert_eq!(code_of("service.name"), Some(126));
        assert_eq!(code_of("gen_ai.usage.output_tokens"), Some(174));
        assert_eq!(KEYS.len(), 174);
    }
}
