//! The server middleware and the traced client, over real loopback sockets, with spans
//! recorded by the in-memory exporter.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use tracekit::export::InMemoryExporter;
use tracekit::http::{Route, TRACERESPONSE_ATTRIBUTE, TraceLayer, TracedClient, TracedRequest};
use tracekit::propagation::{Baggage, Propagator};
use tracekit::{Context, Resource, Sampler, SharedSpan, SpanData, SpanKind, Status, Tracer, Value};

fn tracer(service: &'static str, exporter: &InMemoryExporter, sampler: Sampler) -> Tracer {
    Tracer::builder(Resource::new(service, None, []))
        .with_sampler(sampler)
        .with_processor(exporter.clone())
        .build()
}

async fn spawn(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

fn attr<'a>(s: &'a SpanData, key: &str) -> &'a Value {
    s.attribute(key)
        .unwrap_or_else(|| panic!("span {:?} has no {key}", s.name))
}

/// Sends `request` and reads the answer's body as text.
async fn body_text(request: TracedRequest<'_>) -> String {
    request.send().await.unwrap().text().await.unwrap()
}

/// A downstream service that answers with what it received: the number of `traceparent`
/// lines, the `traceparent`, and the baggage entry `k`.
async fn echo_headers(headers: HeaderMap) -> String {
    let tp: Vec<_> = headers.get_all("traceparent").iter().collect();
    let cx = Context::current();
    format!(
        "{}|{}|{}",
        tp.len(),
        tp.first().and_then(|v| v.to_str().ok()).unwrap_or(""),
        cx.baggage().get("k").unwrap_or("")
    )
}

/// Service `b` (parent-based sampling) serving [`echo_headers`] at `/echo` behind the
/// middleware; its spans go to `exporter`.
async fn spawn_echo_service(exporter: &InMemoryExporter) -> SocketAddr {
    spawn(
        Router::new()
            .route("/echo", get(echo_headers))
            .layer(TraceLayer::new(
                tracer("b", exporter, Sampler::default()),
                Propagator::default(),
            )),
    )
    .await
}

#[tokio::test]
async fn server_span_continues_the_caller_and_answers_traceresponse() {
    let exporter = InMemoryExporter::default();
    let t = tracer("user", &exporter, Sampler::default());
    let tc = t.clone();
    let app = Router::new()
        .route(
            "/users/{id}",
            get(move |Path(id): Path<String>| {
                let tc = tc.clone();
                async move {
                    // An internal span inside the handler is a child of the SERVER span.
                    tc.span("SELECT users").kind(SpanKind::Client).start().end();
                    tracekit::current_span()
                        .unwrap()
                        .set_attribute("app.user.id", id);
                    "ok"
                }
            }),
        )
        .route("/boom", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/refused",
            get(|| async {
                let span = tracekit::current_span().unwrap();
                span.record_exception("Refused", "no capacity");
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .layer(TraceLayer::new(t, Propagator::default()));
    let addr = spawn(app).await;
    let c = reqwest::Client::new();

    let res = c
        .get(format!("http://{addr}/users/7?x=1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("user-agent", "test-agent")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tr = res.headers()["traceresponse"].to_str().unwrap().to_owned();
    let spans = exporter.wait_for(2, std::time::Duration::from_secs(5));
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let db = spans.iter().find(|s| s.name == "SELECT users").unwrap();
    assert_eq!(server.name, "GET /users/{id}");
    assert_eq!(
        server.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(server.parent_is_remote);
    assert_eq!(db.parent_span_id, server.span_id);
    assert_eq!(db.trace_id, server.trace_id);
    assert_eq!(tr, format!("00-{}-{}-01", server.trace_id, server.span_id));
    for (key, want) in [
        ("http.request.method", Value::from("GET".to_owned())),
        ("http.route", Value::from("/users/{id}".to_owned())),
        ("url.path", Value::from("/users/7".to_owned())),
        ("url.query", Value::from("x=1".to_owned())),
        ("http.response.status_code", Value::I64(200)),
        ("user_agent.original", Value::from("test-agent".to_owned())),
        ("client.address", Value::from("127.0.0.1".to_owned())),
        ("server.port", Value::I64(i64::from(addr.port()))),
        ("app.user.id", Value::from("7".to_owned())),
    ] {
        assert_eq!(attr(server, key), &want, "{key}");
    }
    assert_eq!(server.status, Status::Unset);
    assert!(db.start_time_unix_nano >= server.start_time_unix_nano);
    assert!(db.end_time_unix_nano <= server.end_time_unix_nano);

    // 5xx is an error on a SERVER span; 4xx is not.
    exporter.reset();
    assert_eq!(
        c.get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        c.get(format!("http://{addr}/missing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    c.get(format!("http://{addr}/refused"))
        .send()
        .await
        .unwrap();
    let spans = exporter.wait_for(3, std::time::Duration::from_secs(5));
    let boom = spans.iter().find(|s| s.name == "GET /boom").unwrap();
    let refused = spans.iter().find(|s| s.name == "GET /refused").unwrap();
    assert_eq!(boom.status, Status::error("HTTP 503"));
    assert_eq!(
        refused.status,
        Status::error("no capacity"),
        "the handler's own error message is kept"
    );
    let missing = spans.iter().find(|s| s.name == "GET /missing").unwrap();
    assert!(boom.status.is_error());
    assert_eq!(attr(boom, "error.type"), &Value::from("503".to_owned()));
    assert_eq!(missing.status, Status::Unset);
    assert!(missing.attribute("error.type").is_none());
    // No incoming traceparent: each request starts its own trace, as a root.
    assert!(!boom.parent_span_id.is_valid());
    assert_ne!(boom.trace_id, missing.trace_id);
}

#[tokio::test]
async fn invalid_traceparent_restarts_the_trace_and_the_request_succeeds() {
    let exporter = InMemoryExporter::default();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(TraceLayer::new(
            tracer("svc", &exporter, Sampler::default()),
            Propagator::default(),
        ));
    let addr = spawn(app).await;
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .header(
            "traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", "vendor=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let spans = exporter.wait_for(1, std::time::Duration::from_secs(5));
    assert!(!spans[0].parent_span_id.is_valid());
    assert_ne!(
        spans[0].trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(
        spans[0].trace_state.is_empty(),
        "tracestate is ignored with a bad traceparent"
    );
}

#[tokio::test]
async fn traced_client_propagates_context_and_baggage_to_the_next_service() {
    let exporter = InMemoryExporter::default();
    let downstream = spawn_echo_service(&exporter).await;
    let ta = tracer("a", &exporter, Sampler::default());
    let client = TracedClient::new(reqwest::Client::new(), ta.clone(), Propagator::default());

    let root = SharedSpan::new(ta.span("work").start());
    let cx = Context::current()
        .with_span(root.clone())
        .with_baggage(Baggage::default().insert("k", "v 1").unwrap());
    let body = cx
        .scope(body_text(
            client
                .get(format!("http://{downstream}/echo"))
                .route("/echo")
                .peer_service("b"),
        ))
        .await;
    root.end();
    let spans = exporter.wait_for(3, std::time::Duration::from_secs(5));
    let client_span = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let server_span = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let root_span = spans.iter().find(|s| s.name == "work").unwrap();

    let parts: Vec<&str> = body.split('|').collect();
    assert_eq!(parts[0], "1", "exactly one traceparent header");
    assert_eq!(
        parts[1],
        format!("00-{}-{}-03", client_span.trace_id, client_span.span_id)
    );
    assert_eq!(parts[2], "v 1", "baggage crosses the process boundary");
    assert_eq!(client_span.name, "GET /echo");
    assert_eq!(client_span.parent_span_id, root_span.span_id);
    assert_eq!(server_span.parent_span_id, client_span.span_id);
    assert_eq!(server_span.trace_id, root_span.trace_id);
    assert_eq!(attr(client_span, "peer.service"), &Value::from("b"));
    assert_eq!(
        attr(client_span, "http.response.status_code"),
        &Value::I64(200)
    );
    assert_eq!(
        attr(client_span, "url.full"),
        &Value::from(format!("http://{downstream}/echo"))
    );
}

/// Answers with two `traceresponse` lines (an untraced proxy in front of two servers, say).
async fn two_traceresponses() -> (
    axum::response::AppendHeaders<[(&'static str, &'static str); 2]>,
    &'static str,
) {
    (
        axum::response::AppendHeaders([
            (
                "traceresponse",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceresponse",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01",
            ),
        ]),
        "ok",
    )
}

#[tokio::test]
async fn client_records_the_traceresponse_it_receives_as_a_string_array() {
    let exporter = InMemoryExporter::default();
    let traced = spawn(
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .layer(TraceLayer::new(
                tracer("b", &exporter, Sampler::default()),
                Propagator::default(),
            )),
    )
    .await;
    let untraced = spawn(Router::new().route("/two", get(two_traceresponses))).await;
    let client = TracedClient::new(
        reqwest::Client::new(),
        tracer("a", &exporter, Sampler::AlwaysOn),
        Propagator::default(),
    );

    let res = client
        .get(format!("http://{traced}/ok"))
        .send()
        .await
        .unwrap();
    let header = res.headers()["traceresponse"].to_str().unwrap().to_owned();
    let spans = exporter.wait_for(2, std::time::Duration::from_secs(5));
    let client_span = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let server_span = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(
        attr(client_span, TRACERESPONSE_ATTRIBUTE),
        &Value::StrArray(vec![header.clone().into()])
    );
    assert!(header.contains(&server_span.span_id.to_string()));

    exporter.reset();
    client
        .get(format!("http://{untraced}/two"))
        .send()
        .await
        .unwrap();
    let spans = exporter.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(
        attr(&spans[0], TRACERESPONSE_ATTRIBUTE),
        &Value::StrArray(vec![
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01".into(),
        ])
    );

    // No traceresponse header: no attribute.
    exporter.reset();
    let plain = spawn(Router::new().route("/", get(|| async { "ok" }))).await;
    client.get(format!("http://{plain}/")).send().await.unwrap();
    let spans = exporter.wait_for(1, std::time::Duration::from_secs(5));
    assert!(spans[0].attribute(TRACERESPONSE_ATTRIBUTE).is_none());
}

#[tokio::test]
async fn client_spans_are_errors_for_4xx_and_5xx_answers() {
    let exporter = InMemoryExporter::default();
    let downstream = spawn(
        Router::new()
            .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
            .route("/declined", get(|| async { StatusCode::PAYMENT_REQUIRED }))
            .route("/boom", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route("/found", get(|| async { StatusCode::FOUND }))
            .route("/ok", get(|| async { "ok" })),
    )
    .await;
    let client = TracedClient::new(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        tracer("a", &exporter, Sampler::AlwaysOn),
        Propagator::default(),
    );
    for path in ["missing", "declined", "boom", "found", "ok"] {
        client
            .get(format!("http://{downstream}/{path}"))
            .route(format!("/{path}"))
            .send()
            .await
            .unwrap();
    }
    let spans = exporter.wait_for(5, std::time::Duration::from_secs(5));
    let span = |path: &str| {
        spans
            .iter()
            .find(|s| s.name == format!("GET /{path}"))
            .unwrap()
    };
    for (path, code) in [("missing", "404"), ("declined", "402"), ("boom", "503")] {
        let s = span(path);
        assert_eq!(s.status, Status::error(format!("HTTP {code}")), "{path}");
        assert_eq!(
            attr(s, "error.type"),
            &Value::from(code.to_owned()),
            "{path}"
        );
    }
    for path in ["found", "ok"] {
        let s = span(path);
        assert_eq!(s.status, Status::Unset, "{path}");
        assert!(s.attribute("error.type").is_none(), "{path}");
    }
}

#[tokio::test]
async fn client_records_transport_errors() {
    let exporter = InMemoryExporter::default();
    let t = tracer("a", &exporter, Sampler::AlwaysOn);
    let client = TracedClient::new(reqwest::Client::new(), t, Propagator::default());
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client
        .get(format!("http://127.0.0.1:{port}/x"))
        .send()
        .await;
    assert!(err.is_err());
    let spans = exporter.wait_for(1, std::time::Duration::from_secs(5));
    let s = &spans[0];
    assert_eq!(s.kind, SpanKind::Client);
    assert!(s.status.is_error());
    assert_eq!(attr(s, "error.type"), &Value::from("connect"));
    assert!(s.events.iter().any(|e| e.name == "exception"));
}

#[tokio::test]
async fn an_edge_that_does_not_trust_the_sampled_flag_decides_itself_and_keeps_the_trace_id() {
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    // The same parent-based sampler (always on at the root) behind both layers.
    let serve = |trust: bool, exporter: &InMemoryExporter| {
        Router::new().route("/", get(|| async { "ok" })).layer(
            TraceLayer::new(
                tracer("edge", exporter, Sampler::default()),
                Propagator::default(),
            )
            .trust_incoming_sampled(trust),
        )
    };
    for (trust, flags, recorded, answered_flags) in [
        // Trusted: an unsampled caller is followed (nothing recorded) ...
        (true, "00", false, "00"),
        // ... untrusted: the root sampler decides (always on), whatever the caller's flag.
        (false, "00", true, "01"),
        (false, "01", true, "01"),
    ] {
        let exporter = InMemoryExporter::default();
        let addr = spawn(serve(trust, &exporter)).await;
        let res = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .header(
                "traceparent",
                format!("00-{caller_trace}-{caller_span}-{flags}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let tr = res.headers()["traceresponse"].to_str().unwrap().to_owned();
        assert!(tr.starts_with(&format!("00-{caller_trace}-")), "{tr}");
        assert!(
            tr.ends_with(&format!("-{answered_flags}")),
            "trust={trust}: {tr}"
        );
        if recorded {
            let spans = exporter.wait_for(1, std::time::Duration::from_secs(5));
            assert_eq!(spans[0].trace_id.to_string(), caller_trace);
            assert_eq!(spans[0].parent_span_id.to_string(), caller_span);
        } else {
            assert!(exporter.finished_spans().is_empty());
        }
    }
    // An edge whose root sampler says no ignores a caller's sampled flag.
    let exporter = InMemoryExporter::default();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        TraceLayer::new(
            tracer("edge", &exporter, Sampler::parent_based(Sampler::AlwaysOff)),
            Propagator::default(),
        )
        .trust_incoming_sampled(false),
    );
    let addr = spawn(app).await;
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    let tr = res.headers()["traceresponse"].to_str().unwrap().to_owned();
    assert!(tr.ends_with("-00"), "{tr}");
    assert!(exporter.finished_spans().is_empty());
}

#[tokio::test]
async fn unsampled_requests_record_nothing_but_still_propagate() {
    let exporter = InMemoryExporter::default();
    let downstream = spawn_echo_service(&exporter).await;
    let ta = tracer("a", &exporter, Sampler::AlwaysOff);
    let client = TracedClient::new(reqwest::Client::new(), ta.clone(), Propagator::default());
    let root = ta.span("work").start();
    assert!(!root.is_recording());
    let trace_id = root.context().trace_id;
    let body = root
        .scope(body_text(client.get(format!("http://{downstream}/echo"))))
        .await;
    let tp = body.split('|').nth(1).unwrap().to_owned();
    assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
    assert!(tp.ends_with("-02"), "not sampled, random flag kept: {tp}");
    // Downstream is parent-based: it follows the unsampled decision and records nothing.
    assert!(exporter.finished_spans().is_empty());
}

#[tokio::test]
async fn the_layer_works_with_plain_hyper_and_a_route_extension() {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;

    let exporter = InMemoryExporter::default();
    let t = tracer("plain", &exporter, Sampler::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = ServiceBuilder::new()
            // Without axum's router, the application names the route itself.
            .map_request(|mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Route("/items/{id}"));
                req
            })
            .layer(TraceLayer::new(t, Propagator::default()))
            .service_fn(|_req| async {
                let traced = Context::current().span_context().is_some();
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(traced.to_string()),
                )))
            });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
            .await
            .unwrap();
    });
    let res = reqwest::get(format!("http://{addr}/items/3"))
        .await
        .unwrap();
    assert!(res.headers().contains_key("traceresponse"));
    assert_eq!(
        res.text().await.unwrap(),
        "true",
        "the handler sees the current span"
    );
    let spans = exporter.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(spans[0].name, "GET /items/{id}");
    assert_eq!(spans[0].kind, SpanKind::Server);
}
