//! A traced HTTP client around [`reqwest::Client`].
//!
//! Each request gets a CLIENT span, a child of the current span, named
//! `METHOD /route/template` when the caller names the route (else `METHOD`). The span's
//! context is injected as `traceparent`/`tracestate` and the current baggage as `baggage`
//! (exactly one `traceparent`: the client adds no other tracing middleware). The span
//! records the HTTP client semantic-convention attributes, the response status code and
//! `peer.service`.
//!
//! Status (semantic conventions for HTTP spans §Status): a CLIENT span is an error for a
//! transport failure (`error.type` = `connect`, `timeout`, `transport` or `request`) and for
//! every 4xx and 5xx answer (`error.type` = the status code, e.g. `"404"`).
//!
//! When the answer carries W3C Trace Context Level 2 `traceresponse` headers, the span
//! records them as the string array attribute `http.response.header.traceresponse`, one
//! element per header value (semantic conventions §HTTP response headers): it names the
//! server's span, so a collector knows which child to wait for.
//!
//! Build one client at startup and share it (it holds the connection pool).

use std::borrow::Cow;
use std::time::Duration;

use http::Method;

use crate::context::Context;
use crate::http::method_str;
use crate::propagation::{Propagator, TRACERESPONSE};
use crate::span::{SpanKind, Status, Value};
use crate::tracer::Tracer;

/// The CLIENT span attribute holding the answer's `traceresponse` header values (a string
/// array; semantic conventions §HTTP response headers: `http.response.header.<key>`).
pub const TRACERESPONSE_ATTRIBUTE: &str = "http.response.header.traceresponse";

/// A `reqwest` client that traces and propagates. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TracedClient {
    client: reqwest::Client,
    tracer: Tracer,
    propagator: Propagator,
}

impl TracedClient {
    /// Wraps `client`; spans go to `tracer`, headers are written by `propagator`.
    pub fn new(client: reqwest::Client, tracer: Tracer, propagator: Propagator) -> TracedClient {
        TracedClient {
            client,
            tracer,
            propagator,
        }
    }

    /// A client with a connect timeout of `connect_timeout` and a total timeout of `timeout`,
    /// and no proxy taken from the environment.
    ///
    /// # Errors
    /// When reqwest cannot build its client (e.g. the system's TLS backend is unusable).
    pub fn with_timeouts(
        tracer: Tracer,
        propagator: Propagator,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<TracedClient, reqwest::Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .build()?;
        Ok(TracedClient::new(client, tracer, propagator))
    }

    /// Starts a request to `url`.
    pub fn request(&self, method: Method, url: impl AsRef<str>) -> TracedRequest<'_> {
        TracedRequest {
            client: self,
            builder: self.client.request(method.clone(), url.as_ref()),
            method,
            url: url.as_ref().to_owned(),
            route: None,
            peer_service: None,
        }
    }

    /// Starts a GET request.
    pub fn get(&self, url: impl AsRef<str>) -> TracedRequest<'_> {
        self.request(Method::GET, url)
    }

    /// Starts a POST request.
    pub fn post(&self, url: impl AsRef<str>) -> TracedRequest<'_> {
        self.request(Method::POST, url)
    }
}

/// A request being built. Send it with [`send`](TracedRequest::send).
#[must_use = "a request does nothing until .send()"]
pub struct TracedRequest<'c> {
    client: &'c TracedClient,
    builder: reqwest::RequestBuilder,
    method: Method,
    url: String,
    route: Option<Cow<'static, str>>,
    peer_service: Option<Cow<'static, str>>,
}

impl TracedRequest<'_> {
    /// Names the route template the URL was built from (e.g. `/users/{id}`), for the span name.
    pub fn route(mut self, template: impl Into<Cow<'static, str>>) -> Self {
        self.route = Some(template.into());
        self
    }

    /// Sets `peer.service`: the logical name of the service called.
    pub fn peer_service(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.peer_service = Some(name.into());
        self
    }

    /// Sends `body` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sends the request inside a CLIENT span and returns the response once its head arrived.
    ///
    /// # Errors
    /// The transport error from reqwest (connect, timeout, ...), also recorded on the span.
    pub async fn send(self) -> Result<reqwest::Response, reqwest::Error> {
        let TracedRequest {
            client,
            builder,
            method,
            url,
            route,
            peer_service,
        } = self;
        let (parent, baggage) =
            Context::with_current(|cx| (cx.span_context().cloned(), cx.baggage().clone()));
        let method_name = method_str(&method);
        let start = |method_name: Cow<'static, str>| {
            client
                .tracer
                .span(method_name)
                .kind(SpanKind::Client)
                .parent(parent)
                .start()
        };
        let mut request = match builder.build() {
            Ok(r) => r,
            Err(e) => {
                let mut span = start(method_name.clone());
                if let Some(r) = &route {
                    span.update_name(format!("{method_name} {r}"));
                }
                span.push_attribute("http.request.method", method_name);
                span.push_attribute("url.full", url);
                span.set_attribute("error.type", "request");
                span.record_error(&e);
                return Err(e);
            }
        };
        // The name and attributes are built only when the span records.
        let mut span = start(method_name.clone());
        if span.is_recording() {
            if let Some(r) = &route {
                span.update_name(format!("{method_name} {r}"));
            }
            span.push_attribute("http.request.method", method_name);
            span.push_attribute("url.full", request.url().as_str().to_owned());
            if let Some(host) = request.url().host_str() {
                span.push_attribute("server.address", host.to_owned());
            }
            if let Some(port) = request.url().port_or_known_default() {
                span.push_attribute("server.port", port);
            }
            if let Some(r) = route {
                span.push_attribute("url.template", r);
            }
            if let Some(p) = peer_service {
                span.push_attribute("peer.service", p);
            }
        }
        client
            .propagator
            .inject(span.context(), &baggage, request.headers_mut());
        match client.client.execute(request).await {
            Ok(res) => {
                let code = res.status().as_u16();
                span.set_attribute("http.response.status_code", code);
                // Client spans: 4xx and 5xx are errors (semantic conventions for HTTP spans
                // §Status).
                if code >= 400 {
                    span.set_attribute("error.type", code.to_string());
                    span.set_status(Status::error(format!("HTTP {code}")));
                }
                if span.is_recording() {
                    let values: Vec<Cow<'static, str>> = res
                        .headers()
                        .get_all(TRACERESPONSE)
                        .iter()
                        .map(|v| Cow::Owned(String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect();
                    if !values.is_empty() {
                        span.set_attribute(TRACERESPONSE_ATTRIBUTE, Value::StrArray(values));
                    }
                }
                Ok(res)
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                span.set_attribute("error.type", kind);
                span.record_error(&e);
                Err(e)
            }
        }
    }
}
