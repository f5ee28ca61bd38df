//! `notification-service`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use notification_service::{Config, app};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let settings = config.settings();
    demokit::run("notification", &config.common, |t| {
        let queue = demokit::Queue::from_args(&config.nats, &t);
        app(t, settings, &queue)
    })
    .await
}
