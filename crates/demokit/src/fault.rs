//! Per-request fault injection carried as W3C baggage (Spanline DESIGN §3).
//!
//! The frontend turns `?delay=MS`, `?delay=SERVICE:MS` and `?fail=SERVICE` (each may be
//! comma-separated, and repeated) into baggage entries `sim.delay.<service>=<ms>` and
//! `sim.fail.<service>=1`; every service reads its own entries from the request's baggage.
//! A bare `delay=MS` targets the payment service.

use tracekit::propagation::Baggage;
use tracekit::{Context, current_span};

use crate::error::AppError;

/// The attribute recording an injected delay, ms, on the span that waited.
pub const DELAY_ATTRIBUTE: &str = "app.fault.delay_ms";

/// The prefix of every fault-injection baggage key.
pub const SIM_PREFIX: &str = "sim.";

/// The services that accept fault injection.
pub const SERVICES: [&str; 5] = ["frontend", "user", "order", "payment", "notification"];

/// The longest injected delay, ms. Larger values are clamped so a request cannot pin a
/// server task for minutes.
pub const MAX_DELAY_MS: u64 = 30_000;

/// An invalid fault-injection parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The delay is not a whole number of milliseconds.
    #[error("delay must be MS or SERVICE:MS with MS a whole number of milliseconds, got {0:?}")]
    BadDelay(String),
    /// The service is not one of `frontend`, `user`, `order`, `payment`, `notification`.
    #[error("unknown service {0:?}; expected one of frontend, user, order, payment, notification")]
    UnknownService(String),
}

/// The faults requested for one request, as parsed from the frontend's query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// `(service, delay_ms)` pairs.
    pub delays_ms: Vec<(&'static str, u64)>,
    /// Services that must fail.
    pub failures: Vec<&'static str>,
}

fn service(name: &str) -> Result<&'static str, FaultError> {
    SERVICES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(name.trim()))
        .copied()
        .ok_or_else(|| FaultError::UnknownService(name.to_owned()))
}

impl FaultPlan {
    /// Parses the `delay` and `fail` query parameters (`pairs` are decoded query pairs;
    /// other keys are ignored).
    ///
    /// # Errors
    /// [`FaultError`] for a malformed delay or an unknown service name.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<FaultPlan, FaultError> {
        let mut plan = FaultPlan::default();
        for (key, value) in pairs {
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match key {
                    "delay" => {
                        let (svc, ms) = match item.split_once(':') {
                            Some((s, ms)) => (service(s)?, ms),
                            None => ("payment", item),
                        };
                        let ms: u64 = ms
                            .trim()
                            .parse()
                            .map_err(|_| FaultError::BadDelay(item.to_owned()))?;
                        plan.delays_ms.push((svc, ms.min(MAX_DELAY_MS)));
                    }
                    "fail" => plan.failures.push(service(item)?),
                    _ => {}
                }
            }
        }
        Ok(plan)
    }

    /// Whether nothing is injected.
    pub fn is_empty(&self) -> bool {
        self.delays_ms.is_empty() && self.failures.is_empty()
    }

    /// `baggage` without its `sim.*` members (every fault-injection key, whatever follows
    /// the prefix), and how many were dropped. Other members are kept in order.
    pub fn strip_from(baggage: &Baggage) -> (Baggage, usize) {
        let sim: Vec<String> = baggage
            .iter()
            .filter(|m| m.key().starts_with(SIM_PREFIX))
            .map(|m| m.key().to_owned())
            .collect();
        let kept = sim.iter().fold(baggage.clone(), |b, k| b.remove(k));
        (kept, sim.len())
    }

    /// `baggage` with this plan's `sim.*` entries added (replacing any the caller sent).
    pub fn to_baggage(&self, baggage: &Baggage) -> Baggage {
        let entries = self
            .delays_ms
            .iter()
            .map(|(svc, ms)| (format!("sim.delay.{svc}"), ms.to_string()))
            .chain(
                self.failures
                    .iter()
                    .map(|svc| (format!("sim.fail.{svc}"), "1".to_owned())),
            );
        entries.fold(baggage.clone(), |b, (k, v)| {
            // The keys are fixed tokens and the values digits: insertion cannot fail.
            b.insert(&k, &v).unwrap_or(b)
        })
    }
}

/// The faults one service must apply to the current request, read from its baggage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Extra latency to add, ms.
    pub delay_ms: u64,
    /// Whether to answer 503 and record an error.
    pub fail: bool,
}

impl Faults {
    /// Reads `sim.delay.<service>` and `sim.fail.<service>` from `baggage`. Malformed
    /// entries are ignored (baggage is untrusted input).
    pub fn for_service(baggage: &Baggage, service: &str) -> Faults {
        let delay_ms = baggage
            .get(&format!("sim.delay.{service}"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(0, |ms| ms.min(MAX_DELAY_MS));
        let fail = baggage
            .get(&format!("sim.fail.{service}"))
            .is_some_and(|v| matches!(v.trim(), "1" | "true"));
        Faults { delay_ms, fail }
    }
}

/// Applies this service's injected faults to the current request: waits the injected delay
/// (recorded as `app.fault.delay_ms` on the current span), then fails if asked to.
///
/// # Errors
/// [`AppError::injected_fault`] (503, `injected fault (sim.fail.<service>)`) when the
/// baggage carries `sim.fail.<service>=1`.
pub async fn apply_faults(service: &str) -> Result<(), AppError> {
    let faults = Context::with_current(|cx| Faults::for_service(cx.baggage(), service));
    if faults.delay_ms > 0 {
        if let Some(span) = current_span() {
            // At most MAX_DELAY_MS: the cast cannot overflow.
            span.set_attribute(DELAY_ATTRIBUTE, faults.delay_ms as i64);
        }
        tokio::time::sleep(std::time::Duration::from_millis(faults.delay_ms)).await;
    }
    if faults.fail {
        return Err(AppError::injected_fault(service));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms_map_to_baggage_and_back() {
        let plan = FaultPlan::from_query([
            ("delay", "600"),
            ("delay", "user:20,order:5"),
            ("fail", "Payment"),
            ("other", "x"),
        ])
        .unwrap();
        assert_eq!(
            plan.delays_ms,
            vec![("payment", 600), ("user", 20), ("order", 5)]
        );
        assert_eq!(plan.failures, vec!["payment"]);
        let b = plan.to_baggage(&Baggage::default());
        assert_eq!(b.get("sim.delay.payment"), Some("600"));
        assert_eq!(b.get("sim.fail.payment"), Some("1"));
        assert_eq!(
            Faults::for_service(&b, "payment"),
            Faults {
                delay_ms: 600,
                fail: true
            }
        );
        assert_eq!(
            Faults::for_service(&b, "user"),
            Faults {
                delay_ms: 20,
                fail: false
            }
        );
        assert_eq!(Faults::for_service(&b, "frontend"), Faults::default());
    }

    #[test]
    fn stripping_drops_every_sim_member_and_keeps_the_others_in_order() {
        let b = Baggage::parse("a=1,sim.fail.payment=1,sim.delay.order=30000,sim.x=y,b=2");
        let (kept, dropped) = FaultPlan::strip_from(&b);
        assert_eq!(dropped, 3);
        let keys: Vec<&str> = kept.iter().map(|m| m.key()).collect();
        assert_eq!(keys, ["a", "b"]);
        let (same, none) = FaultPlan::strip_from(&kept);
        assert_eq!((same.len(), none), (2, 0));
    }

    #[test]
    fn bad_parameters_are_errors_and_delays_are_clamped() {
        assert!(matches!(
            FaultPlan::from_query([("delay", "abc")]),
            Err(FaultError::BadDelay(_))
        ));
        assert!(matches!(
            FaultPlan::from_query([("fail", "database")]),
            Err(FaultError::UnknownService(_))
        ));
        let plan = FaultPlan::from_query([("delay", "order:99999999")]).unwrap();
        assert_eq!(plan.delays_ms, vec![("order", MAX_DELAY_MS)]);
        let b = Baggage::default().insert("sim.delay.user", "nope").unwrap();
        assert_eq!(Faults::for_service(&b, "user"), Faults::default());
    }
}
