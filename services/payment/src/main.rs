//! `payment-service`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use payment_service::{Config, app_with_queue};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let settings = config.settings();
    demokit::run_with_queue("payment", &config.common, &config.nats, |t, queue| {
        app_with_queue(t, settings, queue)
    })
    .await
}
