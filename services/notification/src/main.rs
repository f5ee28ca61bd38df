//! `notification-service`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use notification_service::{Config, app};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let settings = config.settings();
    demokit::run_with_queue("notification", &config.common, &config.nats, |t, queue| {
        app(t, settings, &queue)
    })
    .await
}
