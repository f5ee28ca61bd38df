//! Server middleware: a tower [`Layer`] that traces every request as a SERVER span.
//!
//! For each request it extracts `traceparent`/`tracestate`/`baggage` (W3C Trace Context
//! Level 2, W3C Baggage), starts a SERVER span named `METHOD /route/template`, records the
//! HTTP server semantic-convention attributes, makes the span and baggage current for the
//! handler (task-local), sets ERROR status on 5xx only (4xx is the caller's problem; a
//! status the handler already set is kept), and answers with a `traceresponse` header.
//! Usable with axum (`Router::layer`) and with plain hyper through tower.
//!
//! An edge service (one that outside callers reach) can refuse the caller's sampling
//! decision with [`TraceLayer::trust_incoming_sampled`]`(false)`: the request keeps the
//! caller's trace id and parent span id (for correlation), but the sampled flag is decided
//! by this tracer's own root sampler, as if the request started a trace (W3C Trace Context
//! §Security considerations: a public API that naively continues every sampled trace lets a
//! caller drive the tracing overhead).
//!
//! Route templates come from axum's `MatchedPath` (feature `axum`) or from a [`Route`]
//! request extension set by the application; without either, the span is named `METHOD`
//! (semantic conventions for HTTP spans §Name).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::context::Context;
use crate::http::method_str;
use crate::propagation::{Propagator, TRACERESPONSE, traceresponse_value};
use crate::span::{SharedSpan, Span, SpanKind, Status};
use crate::span_context::SpanContext;
use crate::tracer::Tracer;

/// A route template for the span name, set as a request extension by applications that do
/// not use axum's router (e.g. `Route("/users/{id}")`).
#[derive(Clone, Debug)]
pub struct Route(pub &'static str);

/// A tower layer that traces requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TraceLayer {
    tracer: Tracer,
    propagator: Propagator,
    trust_incoming_sampled: bool,
}

impl TraceLayer {
    /// Traces with `tracer`, extracting with `propagator`; an incoming sampled flag is
    /// followed (see [`trust_incoming_sampled`](Self::trust_incoming_sampled)).
    pub fn new(tracer: Tracer, propagator: Propagator) -> TraceLayer {
        TraceLayer {
            tracer,
            propagator,
            trust_incoming_sampled: true,
        }
    }

    /// Whether the sampled flag of an incoming `traceparent` is followed (`true`, the
    /// default: the tracer's sampler sees the caller's flag) or replaced by the decision of
    /// the tracer's sampler for a trace root (`false`, for an edge service). The caller's
    /// trace id, parent span id and `tracestate` are kept either way.
    #[must_use]
    pub fn trust_incoming_sampled(mut self, trust: bool) -> TraceLayer {
        self.trust_incoming_sampled = trust;
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            tracer: self.tracer.clone(),
            propagator: self.propagator,
            trust_incoming_sampled: self.trust_incoming_sampled,
        }
    }
}

/// The service produced by [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct TraceService<S> {
    inner: S,
    tracer: Tracer,
    propagator: Propagator,
    trust_incoming_sampled: bool,
}

fn route_of<B>(req: &Request<B>) -> Option<Cow<'static, str>> {
    if let Some(Route(r)) = req.extensions().get::<Route>() {
        return Some(Cow::Borrowed(r));
    }
    #[cfg(feature = "axum")]
    if let Some(p) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(Cow::Owned(p.as_str().to_owned()));
    }
    None
}

/// `parent` with its sampled flag replaced by the root decision of `tracer`'s sampler for
/// its trace id (an untrusted caller's flag). The root decision of a parent-based sampler is
/// its root sampler's.
fn redecide_sampled<B>(tracer: &Tracer, mut parent: SpanContext, req: &Request<B>) -> SpanContext {
    let sampler = &tracer.inner.sampler;
    let name = match route_of(req) {
        Some(r) if sampler.uses_span_name() => format!("{} {r}", method_str(req.method())),
        _ => String::new(),
    };
    let sampled = sampler.decide(None, parent.trace_id, &name).sampled;
    parent.trace_flags = parent.trace_flags.with_sampled(sampled);
    parent
}

/// Starts the SERVER span. The name and the attributes are only built when the span
/// records: an unsampled request costs its ids, not a dozen string copies.
fn start_server_span<B>(tracer: &Tracer, parent: Option<SpanContext>, req: &Request<B>) -> Span {
    let method = method_str(req.method());
    // A sampler deciding per operation (jaeger_remote) needs the final name at the root.
    let name = match route_of(req) {
        Some(r) if parent.is_none() && tracer.inner.sampler.uses_span_name() => {
            Cow::Owned(format!("{method} {r}"))
        }
        _ => method.clone(),
    };
    let mut span = tracer
        .span(name)
        .kind(SpanKind::Server)
        .parent(parent)
        .start();
    if !span.is_recording() {
        return span;
    }
    let route = route_of(req);
    if let Some(r) = &route {
        span.update_name(format!("{method} {r}"));
    }
    span.push_attribute("http.request.method", method);
    span.push_attribute("url.path", req.uri().path().to_owned());
    let scheme = match req.uri().scheme_str() {
        None | Some("http") => Cow::Borrowed("http"),
        Some("https") => Cow::Borrowed("https"),
        Some(other) => Cow::Owned(other.to_owned()),
    };
    span.push_attribute("url.scheme", scheme);
    if let Some(r) = route {
        span.push_attribute("http.route", r);
    }
    if let Some(q) = req.uri().query() {
        span.push_attribute("url.query", q.to_owned());
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if let Some(host) = host {
        match host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((h, Ok(port))) => {
                span.push_attribute("server.address", h.to_owned());
                span.push_attribute("server.port", port);
            }
            _ => span.push_attribute("server.address", host.to_owned()),
        }
    }
    if let Some(ua) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
    {
        span.push_attribute("user_agent.original", ua.to_owned());
    }
    #[cfg(feature = "axum")]
    if let Some(ci) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        span.push_attribute("client.address", ci.0.ip().to_string());
    }
    let version = match req.version() {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "0.9",
    };
    span.push_attribute("network.protocol.version", version);
    span
}

impl<S, B, RB> Service<Request<B>> for TraceService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: std::fmt::Display,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let extracted = self.propagator.extract(req.headers());
        let parent = match extracted.parent {
            Some(p) if !self.trust_incoming_sampled => {
                Some(redecide_sampled(&self.tracer, p, &req))
            }
            parent => parent,
        };
        let span = SharedSpan::new(start_server_span(&self.tracer, parent, &req));
        let cx = Context::new(None, extracted.baggage).with_span(span.clone());
        // Creating the inner future may run handler code synchronously: scope that too.
        let inner = cx.clone().sync_scope(|| self.inner.call(req));
        ResponseFuture {
            inner: cx.scope(inner),
            span: Some(span),
        }
    }
}

pin_project! {
    /// The response future of [`TraceService`]: runs the handler in the span's context and
    /// ends the span when the response head is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<Context, F>,
        span: Option<SharedSpan>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: std::fmt::Display,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(mut span) = this.span.take().and_then(|s| s.take()) else {
            return Poll::Ready(result);
        };
        match result {
            Ok(mut res) => {
                let code = res.status().as_u16();
                span.set_attribute("http.response.status_code", code);
                // Server spans: only 5xx is an error; 4xx is the client's problem
                // (semantic conventions for HTTP spans §Status).
                // A handler that recorded its own error keeps its more specific message.
                if code >= 500 {
                    span.set_attribute("error.type", code.to_string());
                    if !span.has_error_status() {
                        span.set_status(Status::error(format!("HTTP {code}")));
                    }
                }
                let value: HeaderValue = traceresponse_value(span.context());
                res.headers_mut().insert(TRACERESPONSE, value);
                drop(span);
                Poll::Ready(Ok(res))
            }
            Err(e) => {
                span.set_attribute("error.type", "_OTHER");
                span.record_exception("handler", e.to_string());
                drop(span);
                Poll::Ready(Err(e))
            }
        }
    }
}
