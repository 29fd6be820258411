//! Thin binary: parse arguments, wire Ctrl-C to cancellation, run, exit.

use std::process::ExitCode;

use clap::Parser;
use loadgen::cli::Cli;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping, the partial summary follows");
            on_interrupt.cancel();
        }
    });
    let exit = loadgen::main_with(
        cli.command,
        cancel,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await;
    ExitCode::from(exit.code())
}
