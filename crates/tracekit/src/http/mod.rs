//! HTTP instrumentation: the server middleware ([`TraceLayer`]) and the traced client
//! ([`TracedClient`]).

mod client;
mod server;

pub use client::{TRACERESPONSE_ATTRIBUTE, TracedClient, TracedRequest};

use std::borrow::Cow;

/// The method as a `'static` string for the standard methods (no allocation), else a copy.
pub(crate) fn method_str(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => return Cow::Owned(method.as_str().to_owned()),
    })
}
pub use server::{ResponseFuture, Route, TraceLayer, TraceService};
