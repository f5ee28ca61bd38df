//! What every Spanline demo service shares: telemetry setup from `OTEL_*` variables,
//! per-request fault injection carried in baggage, simulated database work as child spans,
//! the one error-to-response mapping, and serving with a concurrency limit and graceful
//! shutdown.
//!
//! Every item has one path: the modules are private and re-exported here, except
//! [`testing`] (the helpers of the services' tests), [`lifecycle`] (stop signals and the
//! health probe, which the collector shares) and [`ports`] (loopback ports for tests that
//! start servers as child processes). Everything but [`lifecycle`] and [`ports`] needs the
//! default `service` feature.

#[cfg(feature = "service")]
mod admission;
#[cfg(feature = "service")]
mod downstream;
#[cfg(feature = "service")]
mod error;
#[cfg(feature = "service")]
mod fault;
#[cfg(feature = "service")]
mod gave_up;
pub mod lifecycle;
pub mod ports;
#[cfg(feature = "service")]
mod queue;
#[cfg(feature = "service")]
mod run;
#[cfg(feature = "service")]
mod serve;
#[cfg(feature = "service")]
mod simulate;
#[cfg(feature = "service")]
mod telemetry;
#[cfg(feature = "service")]
pub mod testing;

#[cfg(feature = "service")]
pub use admission::{DEFAULT_MAX_CONCURRENCY, RETRY_AFTER, limit_concurrency};
#[cfg(feature = "service")]
pub use downstream::{CallError, ServiceClient};
#[cfg(feature = "service")]
pub use error::{
    AppError, ErrorBody, INJECTED_FAULT, OUTCOME_REASON, Origin, current_trace_id, trace_url,
};
#[cfg(feature = "service")]
pub use fault::{
    DELAY_ATTRIBUTE, FaultError, FaultPlan, Faults, MAX_DELAY_MS, SERVICES, SIM_PREFIX,
    apply_faults,
};
#[cfg(feature = "service")]
pub use gave_up::{GaveUp, STREAM_SEQUENCE, max_deliveries_subject};
pub use lifecycle::shutdown_signal;
#[cfg(feature = "service")]
pub use queue::{
    ACK_TIMEOUT, ACK_WAIT, DEFAULT_NATS_URL, Delivery, MAX_DELIVER, NAK_DELAY, NatsArgs,
    PAYMENTS_COMPLETED, PAYMENTS_DECLINED, PAYMENTS_FAILED, PAYMENTS_REQUESTED, Queue, QueueError,
    Redelivery, STREAM, consumer_name,
};
#[cfg(feature = "service")]
pub use run::{CommonArgs, EXIT_CONFIG, TELEMETRY_HELP, run, run_with, run_with_queue};
#[cfg(feature = "service")]
pub use serve::{FLUSH_TIMEOUT, ServeOptions, app, app_with, healthcheck, serve, serve_on};
#[cfg(feature = "service")]
pub use simulate::{DbQuery, db_query, jittered, sqlcommenter};
#[cfg(feature = "service")]
pub use telemetry::{CALL_TIMEOUT, Telemetry};
