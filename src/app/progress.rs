//! Progress bars for long transfers, on standard error.
//!
//! The bar exists from the first byte and is only *drawn* once a transfer
//! has run for [`SHOW_AFTER`] and is not yet finished, so small or fast
//! transfers never flash a bar. Nothing is drawn when standard error is not
//! a terminal.
//!
//! The rate (and the ETA made from it) is measured over the recent two
//! thirds of the transfer so far, at most the last [`WINDOW`]: the first
//! instants of a send only fill the operating system's buffers, many
//! megabytes at once, and counting them would show a rate the network never
//! had; after that, a sender sees the network drain its buffers in lumps of
//! a megabyte or more, so a window much shorter than a second is noisy.

use std::collections::VecDeque;
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a transfer runs before its progress is shown: long enough that
/// the rate is measured over a second after the buffers filled.
pub(crate) const SHOW_AFTER: Duration = Duration::from_millis(1500);

/// The longest stretch of time the rate is measured over.
const WINDOW: Duration = Duration::from_secs(3);

/// How often the drawn rate and ETA change.
pub(crate) const REDRAW: Duration = Duration::from_millis(250);

/// Progress of one transfer.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    rate: RateWindow,
    /// Standard error is a terminal: the bar may be shown.
    terminal: bool,
    shown: bool,
    last_redraw: Option<Duration>,
}

impl Progress {
    /// Tracks the sending of `length` bytes.
    pub fn new(length: u64) -> Self {
        Self::with_verb(length, "sending")
    }

    /// Tracks a transfer of `length` bytes, labelled with `verb`
    /// ("sending", "receiving").
    pub fn with_verb(length: u64, verb: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{verb} {{bar:30}} {{bytes}}/{{total_bytes}} {{msg}}"
            ))
            .expect("valid template"),
        );
        Self {
            bar,
            started: Instant::now(),
            rate: RateWindow::default(),
            terminal: io::stderr().is_terminal(),
            shown: false,
            last_redraw: None,
        }
    }

    /// `done` bytes have been transferred so far.
    pub fn update(&mut self, done: u64) {
        let now = self.started.elapsed();
        self.rate.record(now, done);
        let length = self.bar.length().unwrap_or(0);
        if !self.shown && self.terminal && now >= SHOW_AFTER && done < length {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        if self.shown && self.last_redraw.is_none_or(|at| now >= at + REDRAW) {
            self.last_redraw = Some(now);
            self.bar.set_message(describe_rate(
                self.rate.per_second(now),
                length - done.min(length),
            ));
        }
        self.bar.set_position(done);
    }

    /// Whether the bar has been drawn.
    pub fn is_shown(&self) -> bool {
        self.shown
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

/// "12.5 MiB/s eta 3s", or "" before there is a rate.
fn describe_rate(rate: Option<f64>, remaining: u64) -> String {
    match rate {
        Some(rate) if rate >= 1.0 => {
            let eta = Duration::from_secs_f64((remaining as f64 / rate).min(360_000.0));
            format!("{}/s eta {}", HumanBytes(rate as u64), HumanDuration(eta))
        }
        _ => String::new(),
    }
}

/// The rate of a transfer over the recent two thirds of its time so far, at most
/// [`WINDOW`]: positions sampled as they come, old ones dropped.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// (time since the start, bytes done), oldest first, at least 50 ms apart.
    samples: VecDeque<(Duration, u64)>,
}

impl RateWindow {
    const SPACING: Duration = Duration::from_millis(50);

    pub(crate) fn record(&mut self, at: Duration, done: u64) {
        if self.samples.is_empty() {
            self.samples.push_back((Duration::ZERO, 0));
        }
        match self.samples.back_mut() {
            Some(last) if at < last.0 + Self::SPACING => last.1 = last.1.max(done),
            _ => self.samples.push_back((at, done)),
        }
        // Keep one sample at or before the window's start.
        while self.samples.len() > 2 && self.samples[1].0 + WINDOW <= at {
            self.samples.pop_front();
        }
    }

    /// Bytes per second between the sample nearest `now - window` and the
    /// newest, where the window is two thirds of the time so far, at most
    /// [`WINDOW`].
    pub(crate) fn per_second(&self, now: Duration) -> Option<f64> {
        let window = (now * 2 / 3).min(WINDOW);
        let since = now.checked_sub(window)?;
        let &(end_at, end_done) = self.samples.back()?;
        let &(start_at, start_done) = self
            .samples
            .iter()
            .rev()
            .find(|(at, _)| *at <= since)
            .or(self.samples.front())?;
        let span = end_at.checked_sub(start_at)?.as_secs_f64();
        (span > 0.0).then(|| end_done.saturating_sub(start_done) as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_at_the_start_does_not_count() {
        let mut rate = RateWindow::default();
        // 10 MB into the buffers in the first 20 ms, then 1 MB/s.
        rate.record(ms(20), 10_000_000);
        for t in 1..=20 {
            rate.record(ms(20 + t * 100), 10_000_000 + t * 100_000);
        }
        let shown = rate.per_second(ms(2020)).unwrap();
        // The window is 2020 * 2 / 3 ms: it starts after the burst.
        assert!((shown - 1_000_000.0).abs() < 50_000.0, "{shown}");
    }

    #[test]
    fn a_steady_rate_is_measured_over_the_last_seconds() {
        let mut rate = RateWindow::default();
        for t in 1..=100 {
            rate.record(ms(t * 100), t * 50_000);
        }
        let shown = rate.per_second(ms(10_000)).unwrap();
        assert!((shown - 500_000.0).abs() < 1.0, "{shown}");
        assert!(rate.samples.len() <= 32, "old samples are dropped");
    }

    #[test]
    fn no_rate_before_any_time_has_passed() {
        let rate = RateWindow::default();
        assert_eq!(rate.per_second(Duration::ZERO), None);
        assert_eq!(describe_rate(None, 5), "");
        assert!(describe_rate(Some(2048.0), 4096).starts_with("2.00 KiB/s eta 2"));
    }
}
