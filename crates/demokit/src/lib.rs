//! What every Spanline demo service shares: telemetry setup from `OTEL_*` variables,
//! per-request fault injection carried in baggage, simulated database work as child spans,
//! the one error-to-response mapping, and serving with graceful shutdown.

//!
//! Every item has one path: the modules are private and re-exported here, except
//! [`testing`], the helpers of the services' tests.

mod downstream;
mod error;
mod fault;
mod run;
mod serve;
mod simulate;
mod telemetry;
pub mod testing;

pub use downstream::{CallError, ServiceClient};
pub use error::{
    AppError, ErrorBody, INJECTED_FAULT, OUTCOME_REASON, Origin, current_trace_id, trace_url,
};
pub use fault::{
    DELAY_ATTRIBUTE, FaultError, FaultPlan, Faults, MAX_DELAY_MS, SERVICES, apply_faults,
};
pub use run::{CommonArgs, EXIT_CONFIG, TELEMETRY_HELP, run};
pub use serve::{FLUSH_TIMEOUT, app, healthcheck, serve, serve_on, shutdown_signal};
pub use simulate::{DbQuery, db_query, jittered};
pub use telemetry::Telemetry;
