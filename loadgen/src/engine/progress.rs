//! Live progress on a terminal: one bar per phase with elapsed/total,
//! current rate, errors and p99. Hidden when stderr is not a terminal or
//! with `--quiet`, so logs and CI output stay clean.

use std::{io::IsTerminal, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::duration::format_latency;

pub struct Progress {
    multi: MultiProgress,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Visible only when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bar: None,
        }
    }

    /// Starts a bar of `total` units (milliseconds or items).
    pub fn start(&mut self, label: &str, total: u64, unit_is_time: bool) {
        self.finish();
        let template = if unit_is_time {
            "{prefix:>12} [{bar:30}] {elapsed_precise}/{msg}"
        } else {
            "{prefix:>12} [{bar:30}] {pos}/{len} {msg}"
        };
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        self.bar = Some(bar);
    }

    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    /// Updates the live figures of the current phase.
    pub fn update(&self, total: Duration, rate: f64, errors: u64, p99: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{:>5.0}s  {rate:>8.0} req/s  errors {errors:<6} p99 {}",
                total.as_secs_f64(),
                format_latency(p99)
            ));
        }
    }

    pub fn set_message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
