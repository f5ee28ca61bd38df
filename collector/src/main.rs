//! The `collector` binary: parse config, run, exit with a meaningful code.
//!
//! Exit codes: 0 after a graceful stop (or a healthy `--healthcheck`), 64 for bad
//! configuration, 74 for storage trouble (e.g. a corrupt database), 71 when a listener cannot
//! be bound, 1 for an unhealthy `--healthcheck`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use collector::Config;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("collector: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    if config.healthcheck {
        let addr = collector::healthcheck::probe_addr(config.query_addr);
        let probe = async {
            match &config.tls_cert {
                Some(cert) => {
                    collector::healthcheck::check_tls(addr, cert, Duration::from_secs(3)).await
                }
                None => collector::healthcheck::check(addr, Duration::from_secs(3)).await,
            }
        };
        return match runtime.block_on(probe) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("collector: {reason}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(collector::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collector: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
