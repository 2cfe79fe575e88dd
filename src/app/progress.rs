//! A progress bar for sending long messages: it appears only on a terminal,
//! and only once sending has taken longer than a second.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a send runs before its progress is shown.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Progress of one message.
pub struct Progress {
    length: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    enabled: bool,
}

impl Progress {
    /// Tracks a message of `length` bytes.
    pub fn new(length: u64) -> Self {
        Self {
            length,
            started: Instant::now(),
            bar: None,
            enabled: io::stderr().is_terminal(),
        }
    }

    /// `sent` bytes have gone out.
    pub fn update(&mut self, sent: u64) {
        if self.bar.is_none()
            && self.enabled
            && self.started.elapsed() >= SHOW_AFTER
            && sent < self.length
        {
            let bar =
                ProgressBar::with_draw_target(Some(self.length), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "sending {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(sent);
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
