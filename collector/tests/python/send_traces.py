"""Sends traces to a Spanline collector with real, third-party clients.

Usage: send_traces.py INGEST_URL GRPC_ENDPOINT   (e.g. http://127.0.0.1:4318 http://127.0.0.1:4317)

1. OTLP/HTTP protobuf: opentelemetry-sdk + opentelemetry-exporter-otlp-proto-http (gzip).
2. OTLP/HTTP JSON: opentelemetry-sdk + opentelemetry-exporter-otlp-json-http (the official
   JSON exporter, a separate PyPI package).
3. OTLP/gRPC: opentelemetry-sdk + opentelemetry-exporter-otlp-proto-grpc (gzip).
4. Zipkin v2 JSON: py_zipkin, with a client span and the server span that shares its id.

Every export must succeed; the trace ids go to stdout as one JSON object.
"""

import json
import sys
import urllib.request

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

INGEST = sys.argv[1].rstrip("/")
GRPC = sys.argv[2].rstrip("/")


class Checked:
    """Wraps an exporter and fails loudly if any export is not a success."""

    def __init__(self, inner):
        self.inner = inner

    def export(self, spans):
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            raise SystemExit(f"export failed: {type(self.inner).__module__}: {result}")
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def otel_trace(exporter, service):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(Checked(exporter)))
    tracer = provider.get_tracer("spanline.pytest", "1.0")
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "GET")
        root.set_attribute("http.response.status_code", 200)
        root.set_attribute("app.ratio", 0.5)
        root.set_attribute("app.flags", [True, False])
        with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as db:
            db.set_attribute("db.system.name", "sqlite")
            db.add_event("rows", {"count": 3})
        with tracer.start_as_current_span("charge card") as charge:
            try:
                raise ValueError("card declined")
            except ValueError as e:
                charge.record_exception(e)
                charge.set_status(Status(StatusCode.ERROR, "card declined"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def otlp_proto():
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=f"{INGEST}/v1/traces", compression=Compression.Gzip)
    return otel_trace(exporter, "py-proto")


def otlp_json():
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=f"{INGEST}/v1/traces")
    return otel_trace(exporter, "py-json")


def otlp_grpc():
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=GRPC, insecure=True, compression=Compression.Gzip)
    return otel_trace(exporter, "py-grpc")


def zipkin():
    from py_zipkin import Kind
    from py_zipkin.encoding import Encoding
    from py_zipkin.transport import BaseTransportHandler
    from py_zipkin.zipkin import ZipkinAttrs, zipkin_span

    class Transport(BaseTransportHandler):
        def get_max_payload_bytes(self):
            return None

        def send(self, payload):
            body = payload if isinstance(payload, bytes) else payload.encode()
            req = urllib.request.Request(
                f"{INGEST}/api/v2/spans",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status != 202:
                    raise SystemExit(f"zipkin POST answered {resp.status}")

    transport = Transport()
    with zipkin_span(
        service_name="zk-front",
        span_name="get /checkout",
        transport_handler=transport,
        sample_rate=100.0,
        encoding=Encoding.V2_JSON,
        kind=Kind.SERVER,
    ) as root:
        root.update_binary_annotations({"http.path": "/checkout"})
        trace_id = root.zipkin_attrs.trace_id
        with zipkin_span(service_name="zk-front", span_name="post /cart", kind=Kind.CLIENT) as client:
            client.add_sa_binary_annotation(port=9000, service_name="zk-back", host="127.0.0.1")
            client.add_annotation("ws")
            client_attrs = client.zipkin_attrs
    # The server side of that call, B3-style: same span id, kind SERVER, `shared: true`.
    with zipkin_span(
        service_name="zk-back",
        span_name="post /cart",
        transport_handler=transport,
        encoding=Encoding.V2_JSON,
        kind=Kind.SERVER,
        zipkin_attrs=ZipkinAttrs(
            trace_id=client_attrs.trace_id,
            span_id=client_attrs.span_id,
            parent_span_id=client_attrs.parent_span_id,
            flags="0",
            is_sampled=True,
        ),
    ):
        with zipkin_span(service_name="zk-back", span_name="insert cart"):
            pass
    return {"trace_id": trace_id, "shared_span_id": client_attrs.span_id}


print(
    json.dumps(
        {
            "otlp_proto": otlp_proto(),
            "otlp_json": otlp_json(),
            "otlp_grpc": otlp_grpc(),
            "zipkin": zipkin(),
        }
    )
)
