//! Thin binary: parse arguments, wire Ctrl-C and SIGTERM to cancellation,
//! run, exit. SIGTERM is what Kubernetes sends a pod it stops (e.g. the
//! other shards of a failed Job): like Ctrl-C, the run stops and writes its
//! partial report (exit 130) instead of dying without one.

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
        if stop_signal().await {
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

/// Ctrl-C (SIGINT) or, on Unix, SIGTERM; `false` if neither can be watched.
async fn stop_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                interrupt = tokio::signal::ctrl_c() => interrupt.is_ok(),
                term = term.recv() => term.is_some(),
            };
        }
    }
    tokio::signal::ctrl_c().await.is_ok()
}
