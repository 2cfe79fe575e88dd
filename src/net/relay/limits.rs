//! The relay's limits and its per-source bookkeeping, as pure code: time
//! comes in as an argument, and nothing here touches a socket.
//!
//! A *source* is an IPv4 address (/32) or an IPv6 /64 prefix, the block one
//! subscriber usually holds (sshd's `PerSourceNetBlockSize 32:64`); an
//! IPv4-mapped IPv6 address counts as its IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limits a relay enforces; `chat relay --help` explains each one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// New connections accepted from one source per minute (a burst of this
    /// many, then one every minute / this).
    pub new_per_minute: u32,
    /// Connections one source may hold without a partner (reading their
    /// line, or waiting); more are answered `busy`.
    pub unpaired_per_source: usize,
    /// Connections without a partner in total; one more evicts the oldest
    /// (answered `full`).
    pub unpaired: usize,
    /// Circuits a source may take part in; more are answered `busy`.
    pub circuits_per_source: usize,
    /// Circuits in total; more are answered `full`.
    pub circuits: usize,
    /// How long a new connection has to send its whole line (then `bad`).
    pub line_timeout: Duration,
    /// How long a `connect` waits for a `serve` (then `lonely`).
    pub lonely_timeout: Duration,
    /// How long a `serve` registration waits at most (then `lonely`, and
    /// the server registers again).
    pub registration_lifetime: Duration,
    /// A circuit that carries no byte either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            new_per_minute: 60,
            unpaired_per_source: 16,
            unpaired: 4096,
            circuits_per_source: 64,
            circuits: 1024,
            line_timeout: Duration::from_secs(10),
            lonely_timeout: Duration::from_secs(30),
            registration_lifetime: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Where connections come from, as far as the limits care: an IPv4 address
/// or the first 64 bits of an IPv6 address. `Debug` only; never logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Source {
    /// An IPv4 address (including one mapped into IPv6).
    V4([u8; 4]),
    /// An IPv6 /64 prefix.
    V6([u8; 8]),
}

impl Source {
    /// The source an address belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Source::V6(prefix)
                }
            },
        }
    }
}

/// A rate of `per_minute` events with bursts of as many, as the generic cell
/// rate algorithm: one instant per source, the "theoretical arrival time".
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    interval: Duration,
    burst: Duration,
}

impl Rate {
    /// `per_minute` events per minute, `per_minute` at once (at least 1).
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        Self {
            interval,
            burst: Duration::from_secs(60) - interval,
        }
    }

    /// Whether one more event may happen at `now`; if so, counts it.
    fn take(&self, tat: &mut Option<Instant>, now: Instant) -> bool {
        let start = match *tat {
            Some(t) if t > now => t,
            _ => now,
        };
        if start.duration_since(now) > self.burst {
            return false;
        }
        *tat = Some(start + self.interval);
        true
    }
}

/// What one source holds.
#[derive(Debug, Default)]
struct Held {
    /// The rate limiter's state; `None` once it has fully recovered.
    tat: Option<Instant>,
    unpaired: usize,
    circuits: usize,
}

/// Why a source is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SourceRefusal {
    /// Too many new connections this minute.
    Rate,
    /// Too many connections without a partner.
    Unpaired,
    /// Too many circuits.
    Circuits,
}

/// Per-source counts against the per-source limits.
#[derive(Debug)]
pub struct Sources {
    rate: Rate,
    unpaired_cap: usize,
    circuits_cap: usize,
    held: HashMap<Source, Held>,
}

impl Sources {
    /// Counts for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            rate: Rate::per_minute(limits.new_per_minute),
            unpaired_cap: limits.unpaired_per_source,
            circuits_cap: limits.circuits_per_source,
            held: HashMap::new(),
        }
    }

    /// A new connection from `source` at `now`: counted as unpaired if the
    /// rate and the unpaired cap allow it. A refusal counts nothing, not
    /// even against the rate.
    pub fn admit(&mut self, source: Source, now: Instant) -> Result<(), SourceRefusal> {
        let held = self.held.entry(source).or_default();
        if held.unpaired >= self.unpaired_cap {
            return Err(SourceRefusal::Unpaired);
        }
        if !self.rate.take(&mut held.tat, now) {
            return Err(SourceRefusal::Rate);
        }
        held.unpaired += 1;
        Ok(())
    }

    /// An unpaired connection from `source` is gone (or paired).
    pub fn unpaired_done(&mut self, source: Source) {
        if let Some(held) = self.held.get_mut(&source) {
            held.unpaired = held.unpaired.saturating_sub(1);
        }
    }

    /// Whether a circuit between `a` and `b` is within both sources' caps.
    pub fn circuit_allowed(&self, a: Source, b: Source) -> bool {
        let circuits = |s| self.held.get(&s).map_or(0, |h| h.circuits);
        circuits(a) < self.circuits_cap && circuits(b) < self.circuits_cap
    }

    /// A circuit between `a` and `b` opens: it counts once for each source
    /// (once if both ends share a source).
    pub fn circuit_opened(&mut self, a: Source, b: Source) {
        self.held.entry(a).or_default().circuits += 1;
        if b != a {
            self.held.entry(b).or_default().circuits += 1;
        }
    }

    /// A circuit between `a` and `b` closed.
    pub fn circuit_closed(&mut self, a: Source, b: Source) {
        for source in if a == b { vec![a] } else { vec![a, b] } {
            if let Some(held) = self.held.get_mut(&source) {
                held.circuits = held.circuits.saturating_sub(1);
            }
        }
    }

    /// Forgets sources that hold nothing and whose rate has recovered, so
    /// that the table stays as small as the traffic of the last minute.
    pub fn sweep(&mut self, now: Instant) {
        self.held.retain(|_, held| {
            if held.tat.is_some_and(|t| t <= now) {
                held.tat = None;
            }
            held.tat.is_some() || held.unpaired > 0 || held.circuits > 0
        });
    }

    /// How many sources are tracked.
    pub fn tracked(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn sources_group_ipv6_by_64_and_unmap_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a.into()), Source::of(b.into()));
        assert_ne!(Source::of(a.into()), Source::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped.into()), v4(7));
        assert_ne!(v4(7), v4(8));
    }

    fn limits(new_per_minute: u32, unpaired: usize, circuits: usize) -> Limits {
        Limits {
            new_per_minute,
            unpaired_per_source: unpaired,
            circuits_per_source: circuits,
            ..Limits::default()
        }
    }

    #[test]
    fn rate_allows_a_burst_then_one_per_interval() {
        let mut sources = Sources::new(&limits(3, 100, 1));
        let t0 = Instant::now();
        for _ in 0..3 {
            sources.admit(v4(1), t0).unwrap();
        }
        assert_eq!(sources.admit(v4(1), t0), Err(SourceRefusal::Rate));
        assert_eq!(
            sources.admit(v4(1), t0 + Duration::from_secs(19)),
            Err(SourceRefusal::Rate)
        );
        sources
            .admit(v4(2), t0)
            .expect("another source has its own rate");
        sources
            .admit(v4(1), t0 + Duration::from_secs(20))
            .expect("one more after a third of a minute");
        assert_eq!(
            sources.admit(v4(1), t0 + Duration::from_secs(20)),
            Err(SourceRefusal::Rate)
        );
        // A refusal does not push the next chance further out.
        sources
            .admit(v4(1), t0 + Duration::from_secs(40))
            .expect("and another after two thirds");
    }

    #[test]
    fn unpaired_cap_counts_live_connections() {
        let mut sources = Sources::new(&limits(1000, 2, 1));
        let now = Instant::now();
        sources.admit(v4(1), now).unwrap();
        sources.admit(v4(1), now).unwrap();
        assert_eq!(sources.admit(v4(1), now), Err(SourceRefusal::Unpaired));
        sources.unpaired_done(v4(1));
        sources.admit(v4(1), now).unwrap();
    }

    #[test]
    fn circuits_count_once_per_source() {
        let mut sources = Sources::new(&limits(1000, 10, 2));
        sources.circuit_opened(v4(1), v4(1));
        assert!(sources.circuit_allowed(v4(1), v4(2)));
        sources.circuit_opened(v4(1), v4(2));
        assert!(!sources.circuit_allowed(v4(1), v4(3)), "1 is at its cap");
        assert!(!sources.circuit_allowed(v4(3), v4(1)), "whichever end");
        assert!(sources.circuit_allowed(v4(2), v4(3)));
        sources.circuit_closed(v4(1), v4(1));
        assert!(sources.circuit_allowed(v4(1), v4(3)));
    }

    #[test]
    fn sweep_forgets_idle_sources_only() {
        let mut sources = Sources::new(&limits(60, 10, 10));
        let t0 = Instant::now();
        sources.admit(v4(1), t0).unwrap();
        sources.admit(v4(2), t0).unwrap();
        sources.unpaired_done(v4(2));
        sources.sweep(t0);
        assert_eq!(sources.tracked(), 2, "2's rate has not recovered yet");
        sources.sweep(t0 + Duration::from_secs(1));
        assert_eq!(sources.tracked(), 1, "1 still holds a connection");
    }
}
