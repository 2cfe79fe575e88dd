//! A token bucket for the listener's log lines: a burst of a few, then at
//! most one a second; what is held back is counted and reported in one
//! line once lines may flow again. Pure: the caller brings the time.

use std::time::{Duration, Instant};

/// Lines that may come at once.
pub const BURST: u32 = 5;
/// How often one more line may come after a burst.
pub const EVERY: Duration = Duration::from_secs(1);

/// The state of the bucket.
#[derive(Debug)]
pub struct Throttle {
    tokens: u32,
    /// When the last token was added (or the bucket was full).
    refilled: Instant,
    suppressed: u64,
}

impl Throttle {
    /// A full bucket.
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            refilled: now,
            suppressed: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        while self.tokens < BURST && now.duration_since(self.refilled) >= EVERY {
            self.tokens += 1;
            self.refilled += EVERY;
        }
        if self.tokens == BURST {
            self.refilled = now;
        }
    }

    /// A line to log at `now`: the lines to print (the count of those held
    /// back first, if any, then the line), or nothing if it is held back.
    pub fn line(&mut self, now: Instant, line: String) -> Vec<String> {
        let mut out = self.tick(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            out.push(line);
        } else {
            self.suppressed += 1;
        }
        out
    }

    /// Time passing: the count of held-back lines, once one may be printed.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        self.refill(now);
        if self.suppressed > 0 && self.tokens > 0 {
            self.tokens -= 1;
            let n = std::mem::take(&mut self.suppressed);
            let s = if n == 1 { "" } else { "s" };
            return vec![format!("({n} more listener message{s} suppressed)")];
        }
        Vec::new()
    }

    /// When [`Throttle::tick`] next has something to say, if it will.
    pub fn next_tick(&self) -> Option<Instant> {
        (self.suppressed > 0).then(|| self.refilled + EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_a_second_with_a_count_of_the_rest() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let mut printed = Vec::new();
        for i in 0..50 {
            printed.extend(throttle.line(start, format!("line {i}")));
        }
        assert_eq!(printed.len(), BURST as usize);
        assert_eq!(throttle.next_tick(), Some(start + EVERY));
        assert_eq!(throttle.tick(start + EVERY / 2), Vec::<String>::new());
        assert_eq!(
            throttle.tick(start + EVERY),
            vec!["(45 more listener messages suppressed)".to_string()]
        );
        assert_eq!(throttle.next_tick(), None);
        // The next second allows one more line.
        assert_eq!(
            throttle.line(start + EVERY, "x".into()),
            Vec::<String>::new()
        );
        assert_eq!(
            throttle.line(start + 2 * EVERY, "y".into()),
            vec!["(1 more listener message suppressed)".to_string()]
        );
        // A quiet spell fills the bucket again.
        let later = start + 60 * EVERY;
        let lines: Vec<String> = (0..BURST)
            .flat_map(|i| throttle.line(later, format!("{i}")))
            .collect();
        assert_eq!(lines.len(), BURST as usize, "{lines:?}");
        assert_eq!(lines[0], "(1 more listener message suppressed)");
    }
}
