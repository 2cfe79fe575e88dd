//! What the server tells its user: one line at a time through a callback
//! (stderr, or above the REPL's prompt), and for `-v` through a token
//! bucket, so that a flood of connections cannot flood the terminal: a
//! burst of [`BURST`] lines, then [`PER_SECOND`] a second, and a count of
//! what was left out once there is room again. Lines never hold key
//! material; peers appear by address only (a nickname is the peer's text).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Something the server wants the user to know.
pub type Log = Arc<Mutex<Box<dyn FnMut(String) + Send>>>;

/// Lines that may go out at once.
pub const BURST: f64 = 20.0;

/// Lines a second after the burst.
pub const PER_SECOND: f64 = 2.0;

/// A token bucket that counts the lines it turns away.
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            last: now,
            suppressed: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        self.last = now;
    }

    /// Whether a line may go out at `now`: `Some(n)` if so, with `n` lines
    /// left out before it to report first; `None` (and it is counted) if not.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// The count of lines left out, if there are any and room to say so.
    fn summary(&mut self, now: Instant) -> Option<u64> {
        self.refill(now);
        if self.suppressed > 0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            None
        }
    }
}

fn left_out(n: u64) -> String {
    let lines = if n == 1 { "line" } else { "lines" };
    format!("({n} more {lines} of the connection log left out: too many at once)")
}

struct Inner {
    log: Log,
    bucket: Mutex<Bucket>,
    /// Signalled when a line is left out, for the summary.
    left_out: Condvar,
}

impl Inner {
    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log(line);
        }
    }
}

/// A log whose lines are rate-limited (see the module).
#[derive(Clone)]
pub struct Limited {
    inner: Arc<Inner>,
}

impl Limited {
    /// Limits `log`. A background thread reports what was left out once
    /// the bucket has room again.
    pub fn new(log: Log) -> Self {
        let inner = Arc::new(Inner {
            log,
            bucket: Mutex::new(Bucket::new(Instant::now())),
            left_out: Condvar::new(),
        });
        let for_thread = Arc::clone(&inner);
        // Without the thread, a summary waits for the next line.
        let _ = thread::Builder::new()
            .name("chat-log".into())
            .spawn(move || summarize(&for_thread));
        Self { inner }
    }

    /// Writes `line` if the bucket allows.
    pub fn line(&self, line: String) {
        let admitted = self.inner.bucket().admit(Instant::now());
        match admitted {
            Some(0) => self.inner.write(line),
            Some(n) => {
                self.inner.write(left_out(n));
                self.inner.write(line);
            }
            None => self.inner.left_out.notify_one(),
        }
    }

    /// Writes `line` whatever the bucket says (for lines the server wrote
    /// before `-v` existed, which stay as they were).
    pub fn always(&self, line: String) {
        self.inner.write(line);
    }
}

fn summarize(inner: &Inner) {
    let mut bucket = inner.bucket();
    loop {
        if bucket.suppressed == 0 {
            bucket = inner
                .left_out
                .wait(bucket)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        if let Some(n) = bucket.summary(Instant::now()) {
            drop(bucket);
            inner.write(left_out(n));
            bucket = inner.bucket();
            continue;
        }
        // Room for one more line comes within 1 / PER_SECOND.
        bucket = inner
            .left_out
            .wait_timeout(bucket, Duration::from_secs_f64(1.0 / PER_SECOND))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_steady_trickle_and_a_count_of_the_rest() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        // A flood of 1000 lines at once: the burst goes out.
        let out = (0..1000).filter(|_| bucket.admit(t0).is_some()).count();
        assert_eq!(out, BURST as usize);
        assert_eq!(bucket.suppressed, 1000 - BURST as u64);
        // Half a second later one line is allowed, preceded by the count.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(bucket.admit(later), Some(1000 - BURST as u64));
        assert_eq!(bucket.admit(later), None);
        // The summary alone, once there is room.
        assert_eq!(bucket.summary(later), None, "no room yet");
        assert_eq!(bucket.summary(t0 + Duration::from_secs(1)), Some(1));
        assert_eq!(bucket.summary(t0 + Duration::from_secs(2)), None);
        // Ten seconds of a line every 10 ms: 2 a second get through.
        let mut out = 0;
        for tick in 0..1000u64 {
            let now = t0 + Duration::from_secs(2) + Duration::from_millis(tick * 10);
            out += usize::from(bucket.admit(now).is_some());
        }
        assert!((20..=22).contains(&out), "{out} lines in 10 s");
        // A long pause refills the burst, no more.
        let rested = t0 + Duration::from_secs(3600);
        assert!(bucket.admit(rested).is_some());
        assert!(bucket.tokens <= BURST - 1.0);
    }

    #[test]
    fn left_out_lines_are_counted_in_the_log() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let log: Log = Arc::new(Mutex::new(Box::new(move |line| {
            sink.lock().unwrap().push(line)
        })));
        let limited = Limited::new(log);
        for n in 0..100 {
            limited.line(format!("line {n}"));
        }
        limited.always("always".into());
        // The summary comes from the background thread within a second.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = lines.lock().unwrap().clone();
            if let Some(summary) = got.iter().find(|l| l.contains("left out")) {
                assert!(summary.starts_with("(80 more lines"), "{summary}");
                assert_eq!(got.len(), BURST as usize + 2, "{got:?}");
                assert!(got.contains(&"always".to_string()));
                break;
            }
            assert!(Instant::now() < deadline, "no summary: {got:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
