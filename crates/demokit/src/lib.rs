//! What every Spanline demo service shares: telemetry setup from `OTEL_*` variables,
//! per-request fault injection carried in baggage, simulated database work as child spans,
//! the one error-to-response mapping, and serving with graceful shutdown.
//!
//! Everything except [`lifecycle`] (stop signals and the health probe, which the collector
//! shares) needs the default `service` feature.

#[cfg(feature = "service")]
pub mod error;
#[cfg(feature = "service")]
pub mod fault;
pub mod lifecycle;
#[cfg(feature = "service")]
pub mod run;
#[cfg(feature = "service")]
pub mod serve;
#[cfg(feature = "service")]
pub mod simulate;
#[cfg(feature = "service")]
pub mod telemetry;

#[cfg(feature = "service")]
pub use error::{AppError, current_trace_id};
#[cfg(feature = "service")]
pub use fault::{FaultPlan, Faults};
pub use lifecycle::shutdown_signal;
#[cfg(feature = "service")]
pub use run::{CommonArgs, run};
#[cfg(feature = "service")]
pub use serve::{app, healthcheck, serve, serve_on};
#[cfg(feature = "service")]
pub use simulate::{DbQuery, db_query};
#[cfg(feature = "service")]
pub use telemetry::Telemetry;

/// Applies this service's injected faults to the current request: waits the injected delay,
/// then fails with 503 if asked to.
///
/// # Errors
/// [`AppError::unavailable`] when the baggage carries `sim.fail.<service>=1`.
#[cfg(feature = "service")]
pub async fn apply_faults(service: &str) -> Result<(), AppError> {
    let faults = tracekit::Context::with_current(|cx| Faults::for_service(cx.baggage(), service));
    if faults.delay_ms > 0 {
        if let Some(span) = tracekit::current_span() {
            span.add_event(
                "sim.delay",
                vec![tracekit::KeyValue::new(
                    "sim.delay_ms",
                    faults.delay_ms as i64,
                )],
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(faults.delay_ms)).await;
    }
    if faults.fail {
        return Err(AppError::unavailable(format!(
            "{service} failed: fault injected by sim.fail.{service}"
        )));
    }
    Ok(())
}
