//! Thin binary: parse flags, set up logging, bind, serve until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use items_service::{config::Args, telemetry};

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
    match items_service::serve(config, items_service::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("items-service failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
