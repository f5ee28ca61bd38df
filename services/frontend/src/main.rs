//! `frontend`: see the crate docs.

use std::process::ExitCode;

use clap::Parser;
use frontend::{Config, app};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let settings = config.settings();
    demokit::run_with("frontend", &config.common, config.serve_options(), |t| {
        app(t, settings)
    })
    .await
}
