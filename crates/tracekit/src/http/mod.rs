//! HTTP instrumentation: the server middleware ([`TraceLayer`]) and the traced client
//! ([`TracedClient`]).

pub mod client;
pub mod server;

pub use client::{TracedClient, TracedRequest};
pub use server::{Route, TRACERESPONSE, TraceLayer, TraceService};
