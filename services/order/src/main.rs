//! `order-service`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use order_service::{Config, app_with_queue};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let settings = config.settings();
    demokit::run("order", &config.common, |t| {
        let queue = demokit::Queue::from_args(&config.nats, &t);
        app_with_queue(t, settings, queue)
    })
    .await
}
