//! Key updates (`docs/PROTOCOL.md`, 7.2): each direction's traffic secret,
//! the key it gives, and when the sender moves on to the next one.
//!
//! A sender applies its [`RekeyLimit`] before sealing each record (other
//! than KEY_UPDATE and CLOSE): if the record would take the current key past
//! the byte limit, or the key has sealed all but one of its records, or it
//! is as old as the time limit, a KEY_UPDATE goes out first, sealed under
//! the old key, and the record goes out under the new one, with the
//! sequence number back at 0. The receiver switches keys when it opens the
//! KEY_UPDATE, so a record under the new key cannot be accepted before it.
//! Old secrets and keys are zeroized as soon as they are replaced.
//!
//! Time comes from a [`Clock`], so that tests can move it by hand.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::schedule::TrafficSecret;
use crate::crypto::{Opener, Sealer};
use crate::protocol::{KEY_UPDATE_BYTES, KEY_UPDATE_INTERVAL, KEY_UPDATE_RECORDS, ProtocolError};
use crate::wire::FrameType;
use crate::wire::record::KeyUpdate;

/// Where the sending half reads the time from.
pub trait Clock: Send + Sync {
    /// The current monotonic time.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at an arbitrary instant.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When a sender updates its key: after `bytes` bytes of plaintext, or
/// `records` records, or `interval` of time under one key, whichever comes
/// first. The protocol's values are the most; a user may only lower them
/// (`--rekey-limit SIZE[,TIME]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyLimit {
    bytes: u64,
    records: u64,
    interval: Duration,
}

impl Default for RekeyLimit {
    /// 2^30 bytes, 2^24 records, one hour.
    fn default() -> Self {
        Self {
            bytes: KEY_UPDATE_BYTES,
            records: KEY_UPDATE_RECORDS,
            interval: KEY_UPDATE_INTERVAL,
        }
    }
}

/// The smallest byte limit a user may set.
pub const MIN_REKEY_BYTES: u64 = 1024;
/// The shortest time limit a user may set.
pub const MIN_REKEY_INTERVAL: Duration = Duration::from_secs(1);

/// A `--rekey-limit` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyLimitError {
    /// Not `SIZE[,TIME]`.
    #[error(
        "{0:?} is not SIZE[,TIME]: SIZE is a number of bytes with an optional K, M or G \
         (or `default`), TIME a duration such as 30s, 10m or 1h"
    )]
    Syntax(String),
    /// Above the protocol's limit: it can only be lowered.
    #[error("{what} {given} is above the protocol's {limit}; the rekey limit can only be lowered")]
    AboveDefault {
        /// `size` or `time`.
        what: &'static str,
        /// What was asked for.
        given: String,
        /// The protocol's value.
        limit: String,
    },
    /// So small that nearly every record would update the key.
    #[error("{what} {given} is below the smallest allowed, {minimum}")]
    TooSmall {
        /// `size` or `time`.
        what: &'static str,
        /// What was asked for.
        given: String,
        /// The smallest allowed.
        minimum: String,
    },
}

impl RekeyLimit {
    /// Bytes of plaintext under one key.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records under one key, the KEY_UPDATE included.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Age of a key.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// These limits, lowered to `bytes` and `interval` where given.
    pub fn lowered(
        self,
        bytes: Option<u64>,
        interval: Option<Duration>,
    ) -> Result<Self, RekeyLimitError> {
        let mut limit = self;
        if let Some(bytes) = bytes {
            if bytes > self.bytes {
                return Err(RekeyLimitError::AboveDefault {
                    what: "size",
                    given: bytes.to_string(),
                    limit: self.bytes.to_string(),
                });
            }
            if bytes < MIN_REKEY_BYTES {
                return Err(RekeyLimitError::TooSmall {
                    what: "size",
                    given: bytes.to_string(),
                    minimum: MIN_REKEY_BYTES.to_string(),
                });
            }
            limit.bytes = bytes;
        }
        if let Some(interval) = interval {
            let show = |d: Duration| humantime::format_duration(d).to_string();
            if interval > self.interval {
                return Err(RekeyLimitError::AboveDefault {
                    what: "time",
                    given: show(interval),
                    limit: show(self.interval),
                });
            }
            if interval < MIN_REKEY_INTERVAL {
                return Err(RekeyLimitError::TooSmall {
                    what: "time",
                    given: show(interval),
                    minimum: show(MIN_REKEY_INTERVAL),
                });
            }
            limit.interval = interval;
        }
        Ok(limit)
    }

    /// These limits with at most `records` records under one key (at least
    /// 2: one record and the KEY_UPDATE). Not a user setting: for tests.
    pub fn with_records(self, records: u64) -> Self {
        Self {
            records: records.clamp(2, self.records),
            ..self
        }
    }

    /// These limits with at most `bytes` bytes of plaintext under one key,
    /// however few: for the test vectors, whose short session must show the
    /// byte trigger (a user may not go below [`MIN_REKEY_BYTES`]).
    #[cfg(test)]
    pub(crate) fn with_bytes(self, bytes: u64) -> Self {
        Self {
            bytes: bytes.min(self.bytes),
            ..self
        }
    }

    /// Parses `SIZE[,TIME]` (as ssh's RekeyLimit, with a comma): `SIZE` is
    /// bytes with an optional `K`, `M` or `G` (powers of 1024), or
    /// `default`; `TIME` a duration such as `30s`, `10m` or `1h`, or a
    /// number of seconds. Both lower the protocol's limits.
    pub fn parse(text: &str) -> Result<Self, RekeyLimitError> {
        let syntax = || RekeyLimitError::Syntax(text.to_string());
        let (size, time) = match text.split_once(',') {
            Some((size, time)) => (size.trim(), Some(time.trim())),
            None => (text.trim(), None),
        };
        let bytes = match size {
            "default" => None,
            "" if time.is_some() => None,
            _ => {
                let (digits, unit) = match size.char_indices().last() {
                    Some((i, c)) if c.is_ascii_alphabetic() => (&size[..i], Some(c)),
                    _ => (size, None),
                };
                let shift = match unit.map(|c| c.to_ascii_uppercase()) {
                    None => 0,
                    Some('K') => 10,
                    Some('M') => 20,
                    Some('G') => 30,
                    Some(_) => return Err(syntax()),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let n: u64 = digits.parse().map_err(|_| syntax())?;
                Some(n.checked_mul(1 << shift).ok_or_else(syntax)?)
            }
        };
        let interval = match time {
            None => None,
            Some(time) if !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Duration::from_secs(time.parse().map_err(|_| syntax())?))
            }
            Some(time) => Some(humantime::parse_duration(time).map_err(|_| syntax())?),
        };
        Self::default().lowered(bytes, interval)
    }
}

impl fmt::Display for RekeyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes, {} records or {} per key",
            self.bytes,
            self.records,
            humantime::format_duration(self.interval)
        )
    }
}

/// The sending direction's keys: the current traffic secret, the sealer
/// made from it, its epoch, when it was made, and when to move on.
pub(crate) struct SendKeys {
    secret: TrafficSecret,
    sealer: Sealer,
    epoch: u64,
    installed: Instant,
    limit: RekeyLimit,
    clock: Arc<dyn Clock>,
}

impl SendKeys {
    /// Epoch 0, from the first traffic secret.
    pub(crate) fn new(secret: TrafficSecret) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Self {
            sealer: Sealer::new(&secret.traffic_key()),
            secret,
            epoch: 0,
            installed: clock.now(),
            limit: RekeyLimit::default(),
            clock,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn set_limit(&mut self, limit: RekeyLimit) {
        self.limit = limit;
    }

    /// Reads time from `clock` from now on; the current key counts as made now.
    pub(crate) fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.installed = clock.now();
        self.clock = clock;
    }

    /// The current secret (for test vectors).
    #[cfg(test)]
    pub(crate) fn secret(&self) -> &TrafficSecret {
        &self.secret
    }

    /// Whether a record of `len` bytes of plaintext must wait for a key
    /// update. A fresh key always seals at least one record.
    fn due(&self, len: usize) -> bool {
        let records = self.sealer.records();
        records > 0
            && (self.sealer.bytes() + len as u64 > self.limit.bytes
                || records + 1 >= self.limit.records
                || self.clock.now().saturating_duration_since(self.installed)
                    >= self.limit.interval)
    }

    /// Applies the policy before a record of type `typ` with `len` bytes of
    /// plaintext: appends a KEY_UPDATE to `out` and moves to the next key
    /// if it is time to. After this, the record must be sealed with
    /// [`seal_in_place`](Self::seal_in_place) and sent after `out`.
    pub(crate) fn prepare(
        &mut self,
        typ: FrameType,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        if typ != FrameType::KeyUpdate && typ != FrameType::Close && self.due(len) {
            self.update(out)?;
        }
        Ok(())
    }

    /// Seals a record laid out in place (see [`Sealer::seal_in_place`]).
    pub(crate) fn seal_in_place(
        &mut self,
        typ: FrameType,
        frame: &mut [u8],
    ) -> Result<(), ProtocolError> {
        self.sealer.seal_in_place(typ, frame)
    }

    /// Sends KEY_UPDATE under the current key, then moves to the next
    /// secret: the old secret, key and IV are zeroized as they are dropped.
    pub(crate) fn update(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let epoch = self
            .epoch
            .checked_add(1)
            .ok_or(ProtocolError::Exhausted("key epoch"))?;
        self.sealer
            .seal(FrameType::KeyUpdate, &KeyUpdate { epoch }.encode(), out)?;
        let next = self.secret.next();
        self.sealer = Sealer::new(&next.traffic_key());
        self.secret = next;
        self.epoch = epoch;
        self.installed = self.clock.now();
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn force_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }
}

/// The receiving direction's keys: the current traffic secret, the opener
/// made from it and its epoch.
pub(crate) struct RecvKeys {
    secret: TrafficSecret,
    opener: Opener,
    epoch: u64,
}

impl RecvKeys {
    /// Epoch 0, from the first traffic secret.
    pub(crate) fn new(secret: TrafficSecret) -> Self {
        Self {
            opener: Opener::new(&secret.traffic_key()),
            secret,
            epoch: 0,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Opens the next record under the current key.
    pub(crate) fn open<'f>(
        &mut self,
        frame: &'f mut [u8],
    ) -> Result<(u8, &'f mut [u8]), ProtocolError> {
        self.opener.open_in_place(frame)
    }

    /// After an authentic KEY_UPDATE announcing `epoch`: moves to the next
    /// secret, whose records start again at sequence number 0.
    pub(crate) fn update(&mut self, epoch: u64) -> Result<(), ProtocolError> {
        if self.epoch.checked_add(1) != Some(epoch) {
            return Err(ProtocolError::PeerMisbehaved(
                "KEY_UPDATE announces an epoch other than the next one",
            ));
        }
        let next = self.secret.next();
        self.opener = Opener::new(&next.traffic_key());
        self.secret = next;
        self.epoch = epoch;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn force_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rekey_limit_parses_like_ssh_and_only_lowers() {
        let ok = |text: &str| RekeyLimit::parse(text).unwrap();
        assert_eq!(ok("1M").bytes(), 1 << 20);
        assert_eq!(ok("1M").interval(), KEY_UPDATE_INTERVAL);
        assert_eq!(ok("512k").bytes(), 512 << 10);
        assert_eq!(ok("1G").bytes(), 1 << 30);
        assert_eq!(ok("4096").bytes(), 4096);
        assert_eq!(ok("16M,30s").interval(), Duration::from_secs(30));
        assert_eq!(ok("16M, 10m").interval(), Duration::from_secs(600));
        assert_eq!(ok("default,90").interval(), Duration::from_secs(90));
        assert_eq!(ok(",1h"), RekeyLimit::default());
        assert_eq!(ok("default"), RekeyLimit::default());
        assert_eq!(ok("1M").records(), KEY_UPDATE_RECORDS);
        for (bad, why) in [
            ("", "empty"),
            ("M", "no digits"),
            ("1T", "unknown unit"),
            ("1.5M", "not an integer"),
            ("-1", "negative"),
            ("1M,soon", "not a duration"),
            ("99999999999999999999G", "overflow"),
        ] {
            assert!(
                matches!(RekeyLimit::parse(bad), Err(RekeyLimitError::Syntax(_))),
                "{bad:?} ({why})"
            );
        }
        assert!(matches!(
            RekeyLimit::parse("2G"),
            Err(RekeyLimitError::AboveDefault { what: "size", .. })
        ));
        assert!(matches!(
            RekeyLimit::parse("1M,2h"),
            Err(RekeyLimitError::AboveDefault { what: "time", .. })
        ));
        assert!(matches!(
            RekeyLimit::parse("1000"),
            Err(RekeyLimitError::TooSmall { what: "size", .. })
        ));
        assert!(matches!(
            RekeyLimit::parse("1M,0s"),
            Err(RekeyLimitError::TooSmall { what: "time", .. })
        ));
        assert_eq!(
            RekeyLimit::parse("2G").unwrap_err().to_string(),
            "size 2147483648 is above the protocol's 1073741824; the rekey limit can only be lowered"
        );
        assert_eq!(RekeyLimit::default().with_records(0).records(), 2);
        assert_eq!(
            RekeyLimit::default().with_records(u64::MAX).records(),
            1 << 24
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now() - t0, Duration::from_secs(5));
    }
}
