//! What the relay tells its operator: counters, and the periodic one-line
//! summary made of them. Never an address, never a room.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::circuit::End;
use super::pairing::Gauges;
use crate::wire::relay::Answer;

/// Why a connection ended before it was paired, other than by an answer.
#[derive(Clone, Copy, Debug)]
pub enum Quiet {
    /// It closed before sending its whole line, or while waiting.
    Left,
    /// A renewed registration took its place (closed without an answer).
    Renewed,
}

/// Event counters since the last summary. Updated from every task; read and
/// reset by the summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read from clients after `ok` (each byte is written once).
    pub bytes: AtomicU64,
    answers: [AtomicU64; Answer::ALL.len()],
    evicted: AtomicU64,
    left: AtomicU64,
    renewed: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
    idle: AtomicU64,
    accept_errors: AtomicU64,
}

/// One interval's counts, taken by [`Counters::take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Bytes relayed.
    pub bytes: u64,
    /// Answers sent, by answer, in the order of [`Answer::ALL`]. `ok` counts
    /// circuits opened.
    pub answers: [u64; Answer::ALL.len()],
    /// Of the `full` answers, those to evicted connections.
    pub evicted: u64,
    /// Connections that left before being paired, without an answer.
    pub left: u64,
    /// Registrations superseded by their own renewal.
    pub renewed: u64,
    /// Circuits closed by their ends, failed, or idle.
    pub ended: [u64; 3],
    /// Failed accepts (e.g. out of file descriptors).
    pub accept_errors: u64,
}

fn index(answer: Answer) -> usize {
    Answer::ALL
        .iter()
        .position(|&a| a == answer)
        .expect("every answer is listed")
}

impl Counters {
    /// One answer was sent (for `ok`: one circuit opened).
    pub fn answered(&self, answer: Answer) {
        self.answers[index(answer)].fetch_add(1, Ordering::Relaxed);
    }

    /// An unpaired connection was evicted (it was also answered `full`).
    pub fn evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended unpaired without an answer.
    pub fn quiet(&self, why: Quiet) {
        match why {
            Quiet::Left => &self.left,
            Quiet::Renewed => &self.renewed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A circuit ended.
    pub fn ended(&self, end: End) {
        match end {
            End::Closed => &self.closed,
            End::Failed => &self.failed,
            End::Idle => &self.idle,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// An accept failed.
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, resetting them.
    pub fn take(&self) -> Tally {
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
        Tally {
            bytes: take(&self.bytes),
            answers: std::array::from_fn(|i| take(&self.answers[i])),
            evicted: take(&self.evicted),
            left: take(&self.left),
            renewed: take(&self.renewed),
            ended: [take(&self.closed), take(&self.failed), take(&self.idle)],
            accept_errors: take(&self.accept_errors),
        }
    }
}

/// The summary line: gauges now, counts over the last `period`.
pub fn line(period: Duration, gauges: Gauges, tally: &Tally) -> String {
    let mut out = format!(
        "summary for the last {}: {} circuits open, {} opened, {} closed ({} failed, {} idle); \
         {} unpaired, of which {} serve and {} connect waiting; {} relayed; answered",
        humantime::format_duration(Duration::from_secs(period.as_secs())),
        gauges.circuits,
        tally.answers[index(Answer::Ok)],
        tally.ended.iter().sum::<u64>(),
        tally.ended[1],
        tally.ended[2],
        gauges.unpaired,
        gauges.serves,
        gauges.connects,
        bytes(tally.bytes),
    );
    for answer in Answer::ALL.into_iter().filter(|&a| a != Answer::Ok) {
        let _ = write!(out, " {} {}", answer.word(), tally.answers[index(answer)]);
        if answer == Answer::Full && tally.evicted > 0 {
            let _ = write!(out, " ({} evicted)", tally.evicted);
        }
        if answer != Answer::Bad {
            out.push(',');
        }
    }
    let _ = write!(
        out,
        "; {} left unpaired, {} renewed",
        tally.left, tally.renewed
    );
    if tally.accept_errors > 0 {
        let _ = write!(out, "; {} failed accepts", tally.accept_errors);
    }
    out
}

/// A byte count for people: `0 B`, `12.3 KiB`, `1.0 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_every_reason_and_resets() {
        let counters = Counters::default();
        counters.answered(Answer::Ok);
        counters.answered(Answer::Lonely);
        counters.answered(Answer::Full);
        counters.evicted();
        counters.answered(Answer::Bad);
        counters.answered(Answer::Bad);
        counters.quiet(Quiet::Left);
        counters.ended(End::Idle);
        counters.bytes.fetch_add(3 << 20, Ordering::Relaxed);
        let tally = counters.take();
        let gauges = Gauges {
            unpaired: 2,
            serves: 1,
            connects: 0,
            circuits: 4,
        };
        assert_eq!(
            line(Duration::from_secs(600), gauges, &tally),
            "summary for the last 10m: 4 circuits open, 1 opened, 1 closed (0 failed, 1 idle); \
             2 unpaired, of which 1 serve and 0 connect waiting; 3.0 MiB relayed; answered full 1 (1 evicted), busy 0, \
             lonely 1, replaced 0, bad 2; 1 left unpaired, 0 renewed"
        );
        assert_eq!(counters.take(), Tally::default());
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
    }
}
