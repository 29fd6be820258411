//! Thin binary: parse flags, set up logging, bind, serve until SIGTERM/Ctrl-C.
//! It also installs the panic hook: a panic (contained per request by the
//! `catch_panic` layer) is logged as one rate-limited line with its
//! location, never with a backtrace, whatever `RUST_BACKTRACE` says.

use std::{process::ExitCode, sync::Arc};

use clap::Parser;
use items_service::{
    config::Args,
    log_limit::{ErrorReport, LogLimiter},
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("items-service: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let limiter = Arc::new(LogLimiter::default());
    tokio::spawn(Arc::clone(&limiter).flush_periodically());
    std::panic::set_hook(Box::new(move |info| {
        let report = ErrorReport {
            kind: "panic",
            cause: info.to_string().replace('\n', " "),
            is_error: true,
        };
        limiter.log(&report);
    }));
    match items_service::serve(config, items_service::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("items-service failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
