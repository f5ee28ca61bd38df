//! `loadgen orders`: demo traffic for sampling. Places orders through the frontend
//! (`POST /orders`) at a fixed rate (open loop: a request that would exceed the concurrency
//! is skipped and counted, not queued) with a mix of faults, and prints a live summary: rate,
//! latency percentiles, status counts.
//!
//! Each request is one of:
//! * `ok`: a known user, a basket under the payment limit (201);
//! * `fail`: `?fail=<service>`, an injected fault (503 from the failing service);
//! * `slow`: `?delay=<service>:<ms>`, an injected delay (201, late);
//! * `unknown_user`: a user id the user service does not know (404);
//! * `decline`: a basket over the payment limit (402).
//!
//! With `--out FILE` every answer is written as a TSV line: seconds since the start when the
//! order was sent, kind, HTTP status (0 for a transport error), latency in ms, trace id and
//! sampled flag from the `traceresponse` header (`-` when absent).
//! `scripts/bench-sampling.sh` reads it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

/// The demo's known user ids (the user service's table).
const USERS: [&str; 5] = ["1", "2", "3", "4", "5"];
/// Products and how many of each stay under the payment service's default limit (5000).
const BASKETS: [(&str, u32); 6] = [
    ("Laptop", 3),
    ("Phone", 6),
    ("Monitor", 14),
    ("Headphones", 25),
    ("Keyboard", 50),
    ("Mouse", 100),
];

/// `loadgen orders` options.
#[derive(clap::Args, Debug)]
pub(crate) struct OrdersArgs {
    /// The frontend's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Orders per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Requests in flight at most; beyond, a due request is skipped (counted).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run (0: until interrupted).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Fraction of orders with an injected failure (`?fail=SERVICE`), 0..=1.
    #[arg(long, default_value_t = 0.0)]
    fail: f64,
    /// The service that fails.
    #[arg(long, default_value = "payment")]
    fail_service: String,
    /// Fraction of orders with an injected delay (`?delay=SERVICE:MS`), 0..=1.
    #[arg(long, default_value_t = 0.0)]
    slow: f64,
    /// The injected delay, ms.
    #[arg(long, default_value_t = 1500)]
    slow_ms: u64,
    /// The service that is slow.
    #[arg(long, default_value = "payment")]
    slow_service: String,
    /// Fraction of orders by an unknown user (404), 0..=1.
    #[arg(long, default_value_t = 0.0)]
    unknown_user: f64,
    /// Fraction of orders over the payment limit (402), 0..=1.
    #[arg(long, default_value_t = 0.0)]
    decline: f64,
    /// Write one TSV line per answer here (sent_s, kind, status, latency_ms, trace_id,
    /// sampled).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds between live summary lines.
    #[arg(long, default_value_t = 1.0)]
    summary_every: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ok,
    Fail,
    Slow,
    UnknownUser,
    Decline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Fail => "fail",
            Kind::Slow => "slow",
            Kind::UnknownUser => "unknown_user",
            Kind::Decline => "decline",
        }
    }
}

#[derive(Debug)]
struct Outcome {
    /// When it was sent, since the run started.
    sent_at: Duration,
    kind: Kind,
    /// HTTP status; 0 for a transport error.
    status: u16,
    latency: Duration,
    /// From `traceresponse`: (trace id, sampled).
    trace: Option<(String, bool)>,
}

impl OrdersArgs {
    fn check(&self) -> Result<(), String> {
        let fractions = [self.fail, self.slow, self.unknown_user, self.decline];
        if fractions.iter().any(|f| !(0.0..=1.0).contains(f)) || fractions.iter().sum::<f64>() > 1.0
        {
            return Err(
                "--fail, --slow, --unknown-user and --decline are fractions adding up to at most 1"
                    .into(),
            );
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) || self.concurrency == 0 {
            return Err("--rate and --concurrency must be positive".into());
        }
        Ok(())
    }

    fn pick(&self) -> Kind {
        let mut x = fastrand::f64();
        for (kind, share) in [
            (Kind::Fail, self.fail),
            (Kind::Slow, self.slow),
            (Kind::UnknownUser, self.unknown_user),
            (Kind::Decline, self.decline),
        ] {
            if x < share {
                return kind;
            }
            x -= share;
        }
        Kind::Ok
    }

    /// The URL and JSON body of one order of `kind`.
    fn request(&self, kind: Kind) -> (String, String) {
        let base = self.url.trim_end_matches('/');
        let user = match kind {
            Kind::UnknownUser => "404404",
            _ => USERS[fastrand::usize(..USERS.len())],
        };
        let (product, max) = match kind {
            // Over the limit within the order service's 1..=100 quantities.
            Kind::Decline => BASKETS[fastrand::usize(..3)],
            _ => BASKETS[fastrand::usize(..BASKETS.len())],
        };
        let quantity = match kind {
            Kind::Decline => max + 1 + fastrand::u32(0..3),
            _ => fastrand::u32(1..=max.min(3)),
        };
        let query = match kind {
            Kind::Fail => format!("?fail={}", self.fail_service),
            Kind::Slow => format!("?delay={}:{}", self.slow_service, self.slow_ms),
            _ => String::new(),
        };
        let body = format!(r#"{{"user_id":"{user}","product":"{product}","quantity":{quantity}}}"#);
        (format!("{base}/orders{query}"), body)
    }
}

/// `00-<trace id>-<span id>-<flags>` → (trace id, sampled).
fn parse_traceresponse(value: &str) -> Option<(String, bool)> {
    let mut parts = value.trim().split('-');
    let (_, trace, _, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace.len() == 32).then(|| (trace.to_owned(), flags & 1 == 1))
}

async fn place(
    client: reqwest::Client,
    (url, body): (String, String),
    kind: Kind,
    run_started: Instant,
) -> Outcome {
    let started = Instant::now();
    let sent_at = started.duration_since(run_started);
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let (status, trace) = match answer {
        Ok(r) => {
            let trace = r
                .headers()
                .get("traceresponse")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_traceresponse);
            let status = r.status().as_u16();
            // Read the body so the connection is reused.
            let _ = r.bytes().await;
            (status, trace)
        }
        Err(_) => (0, None),
    };
    Outcome {
        sent_at,
        kind,
        status,
        latency: started.elapsed(),
        trace,
    }
}

/// Latency percentiles and status counts of a set of answers.
#[derive(Default)]
struct Window {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
}

impl Window {
    fn add(&mut self, o: &Outcome) {
        self.latencies_us
            .push(u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX));
        *self.statuses.entry(o.status).or_default() += 1;
    }

    fn line(&mut self, seconds: f64) -> String {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n.max(1)) - 1;
            self.latencies_us
                .get(i)
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, c)| {
                if *s == 0 {
                    format!("error={c}")
                } else {
                    format!("{s}={c}")
                }
            })
            .collect();
        format!(
            "{:.1} orders/s  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  [{}]",
            n as f64 / seconds.max(1e-9),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0),
            statuses.join(" ")
        )
    }
}

/// Runs `loadgen orders` until `--duration` passes (or forever with 0).
///
/// # Errors
/// Invalid options, or the `--out` file cannot be written.
pub(crate) async fn run(args: OrdersArgs) -> Result<(), String> {
    args.check()?;
    let args = Arc::new(args);
    let mut out = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let started = Instant::now();
    let end = (args.duration > 0.0).then(|| started + Duration::from_secs_f64(args.duration));
    let every = Duration::from_secs_f64(1.0 / args.rate);
    eprintln!(
        "loadgen orders: {} orders/s to {} (concurrency {}, fail {}, slow {}, unknown users {}, declines {})",
        args.rate,
        args.url,
        args.concurrency,
        args.fail,
        args.slow,
        args.unknown_user,
        args.decline
    );
    let sender = {
        let args = Arc::clone(&args);
        tokio::spawn(async move {
            let mut skipped = 0u64;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                ticks.tick().await;
                if end.is_some_and(|e| Instant::now() >= e) {
                    return skipped;
                }
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    skipped += 1;
                    continue;
                };
                let kind = args.pick();
                let request = args.request(kind);
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let outcome = place(client, request, kind, started).await;
                    drop(permit);
                    let _ = tx.send(outcome);
                });
            }
        })
    };
    let summary_every = Duration::from_secs_f64(args.summary_every.max(0.1));
    let mut window = Window::default();
    let mut total = Window::default();
    let mut kinds: BTreeMap<(Kind, u16), u64> = BTreeMap::new();
    let mut sampled = 0u64;
    let mut window_start = Instant::now();
    // Ends when the sender has stopped and every request in flight has answered (every
    // sender of the channel is gone).
    loop {
        let deadline = tokio::time::sleep_until((window_start + summary_every).into());
        tokio::select! {
            o = rx.recv() => {
                let Some(o) = o else { break };
                window.add(&o);
                total.add(&o);
                *kinds.entry((o.kind, o.status)).or_default() += 1;
                sampled += u64::from(o.trace.as_ref().is_some_and(|t| t.1));
                if let Some(f) = out.as_mut() {
                    let (trace, flag) = o.trace.as_ref().map_or(("-", "-"), |(t, s)| (t.as_str(), if *s { "1" } else { "0" }));
                    writeln!(
                        f,
                        "{:.3}\t{}\t{}\t{:.3}\t{trace}\t{flag}",
                        o.sent_at.as_secs_f64(),
                        o.kind.name(),
                        o.status,
                        o.latency.as_secs_f64() * 1e3
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
            () = deadline => {
                let elapsed = window_start.elapsed().as_secs_f64();
                eprintln!("[{:>6.1}s] {}", started.elapsed().as_secs_f64(), window.line(elapsed));
                window = Window::default();
                window_start = Instant::now();
            }
        }
    }
    let skipped = sender.await.unwrap_or(0);
    if let Some(mut f) = out {
        f.flush().map_err(|e| e.to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("total: {}", total.line(seconds));
    let by_kind: Vec<String> = kinds
        .iter()
        .map(|((k, s), n)| format!("{}/{s}={n}", k.name()))
        .collect();
    eprintln!(
        "by kind/status: {}; sampled (traceresponse): {sampled}; skipped at the concurrency limit: {skipped}",
        by_kind.join(" ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OrdersArgs,
    }

    fn args(extra: &[&str]) -> OrdersArgs {
        Cli::try_parse_from(std::iter::once("orders").chain(extra.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn the_mix_follows_the_fractions() {
        let a = args(&["--fail", "0.2", "--decline", "0.1"]);
        assert!(a.check().is_ok());
        let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(a.pick()).or_default() += 1;
        }
        let share = |k| counts.get(&k).copied().unwrap_or(0);
        assert!((1_800..=2_200).contains(&share(Kind::Fail)), "{counts:?}");
        assert!((850..=1_150).contains(&share(Kind::Decline)), "{counts:?}");
        assert_eq!(share(Kind::Slow) + share(Kind::UnknownUser), 0);
        assert!(args(&["--fail", "0.7", "--slow", "0.7"]).check().is_err());
        assert!(args(&["--rate", "0"]).check().is_err());
    }

    #[test]
    fn requests_carry_their_fault() {
        let a = args(&["--url", "http://fe:8080/", "--slow-ms", "900"]);
        let (url, _) = a.request(Kind::Fail);
        assert_eq!(url, "http://fe:8080/orders?fail=payment");
        let (url, _) = a.request(Kind::Slow);
        assert_eq!(url, "http://fe:8080/orders?delay=payment:900");
        let (url, body) = a.request(Kind::UnknownUser);
        assert_eq!(url, "http://fe:8080/orders");
        assert!(body.contains(r#""user_id":"404404""#));
        for _ in 0..100 {
            let (_, body) = a.request(Kind::Decline);
            let v: (String, u32) = BASKETS
                .iter()
                .find(|(p, _)| body.contains(p))
                .map(|(p, max)| ((*p).to_owned(), *max))
                .unwrap();
            let q: u32 = body
                .rsplit(':')
                .next()
                .and_then(|s| s.trim_end_matches('}').parse().ok())
                .unwrap();
            assert!(q > v.1, "{body}");
        }
    }

    #[test]
    fn traceresponse_gives_the_trace_and_its_sampled_flag() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            parse_traceresponse(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some((id.to_owned(), true))
        );
        assert_eq!(
            parse_traceresponse(&format!("00-{id}-00f067aa0ba902b7-02")),
            Some((id.to_owned(), false))
        );
        assert_eq!(parse_traceresponse("garbage"), None);
    }
}
