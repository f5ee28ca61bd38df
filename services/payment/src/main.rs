//! `payment-service`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use payment_service::{Config, app};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let settings = config.settings();
    demokit::run("payment", &config.common, |t| app(t, settings)).await
}
