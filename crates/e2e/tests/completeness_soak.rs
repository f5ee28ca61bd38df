//! Completeness never lies: orders placed while each service exports after its own random
//! delay; every `wait=15` answer is compared with the trace as finally stored (after every
//! service has stopped and flushed). An answer that says complete must hold every span; an
//! answer that says incomplete must really have lacked one.
//!
//! CI runs a short round (`SOAK_ORDERS=20`, delays up to `SOAK_MAX_DELAY_MS=1000`);
//! `scripts/completeness-soak.sh` runs the full one (200 orders, delays up to 3 s).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use spanline_e2e::Stack;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn no_answer_says_complete_with_a_span_missing() {
    let orders = env_u64("SOAK_ORDERS", 20);
    let max_delay_ms = env_u64("SOAK_MAX_DELAY_MS", 1000);
    let seed = env_u64("SOAK_SEED", fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let delays: Vec<(String, u64)> = ["user", "order", "payment", "frontend"]
        .iter()
        .map(|s| (s.to_string(), rng.u64(0..=max_delay_ms)))
        .collect();
    eprintln!("soak: {orders} orders, seed {seed}, export delays (ms) {delays:?}");
    let env_delays = delays.clone();
    let mut stack = Stack::start_with(move |svc| {
        let ms = env_delays
            .iter()
            .find(|(s, _)| s == svc)
            .map_or(100, |(_, ms)| *ms);
        vec![("OTEL_BSP_SCHEDULE_DELAY", ms.to_string())]
    })
    .await;

    let mut ids = Vec::new();
    for i in 0..orders {
        // A mix of outcomes: successes, declines (402) and an injected failure.
        let (quantity, query) = match i % 10 {
            7 => (5, ""),
            9 => (1, "?fail=payment"),
            _ => (1, ""),
        };
        let (_, body) = stack.place_order(query, "1", quantity).await;
        ids.push(body["trace_id"].as_str().unwrap().to_owned());
    }

    // Ask for every tree at once, each waiting up to 15 s for completeness.
    let answers = futures_util::future::join_all(ids.iter().map(|id| {
        let url = format!("{}/v1/traces/{id}/tree?wait=15", stack.query_url);
        let client = stack.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    }))
    .await;

    // Every service flushes on SIGTERM: what the collector holds then is the whole trace.
    stack.stop_services();
    let mut complete = 0;
    for (id, answer) in ids.iter().zip(&answers) {
        let whole = stack.query_json(&format!("/v1/traces/{id}/tree")).await;
        assert_eq!(
            whole["complete"], true,
            "the stored trace is whole: {whole:#}"
        );
        let (got, all) = (&answer["span_count"], &whole["span_count"]);
        if answer["complete"] == true {
            complete += 1;
            assert_eq!(
                got, all,
                "said complete with {got} of {all} spans: {answer:#}"
            );
        } else {
            assert_ne!(got, all, "said incomplete with all {all} spans: {answer:#}");
        }
    }
    eprintln!(
        "soak: {complete} of {orders} answers complete within 15 s (seed {seed}, delays {delays:?})"
    );
    assert_eq!(complete, orders, "every order completes within 15 s");
    stack.shutdown();
}
