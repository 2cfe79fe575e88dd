//! Who may hold an unauthenticated connection to `chat serve`: the rules,
//! without sockets, so that they can be tested as a table.
//!
//! A connection counts against two caps from the moment it is accepted
//! until its handshake is complete (or it is gone): [`PER_PREFIX`]
//! connections per source prefix (an IPv4 address, or the /64 of an IPv6
//! address, as sshd's `PerSourceNetBlockSize 32:64`) and [`TOTAL`] in all.
//! A new connection is never refused because the caps are full; one that
//! is already counted is dropped to make room for it, so connections that
//! say nothing cannot hold the door shut (sshd's `MaxStartups` refuses the
//! newcomer instead, which is what lets silent connections lock it out):
//!
//! * if the newcomer's own prefix is full, the **oldest** connection of
//!   that prefix goes: a prefix competes only with itself;
//! * else, if the total is full, a **random** connection of the fullest
//!   prefix (or prefixes, if several hold as many) goes, so that a
//!   newcomer from a prefix of its own always finds room at the expense of
//!   whoever holds the most.
//!
//! Either way the victim is taken from the connections at the earliest
//! [`Stage`]: one that has not even sent its ClientHello goes before one
//! that waits for a transient key, which goes before one whose handshake is
//! under way (and which has cost us a key).
//!
//! Deadlines are not kept here: each connection's thread enforces its own
//! (see `server.rs`).

use std::fmt;
use std::net::IpAddr;

/// Most unauthenticated connections from one source prefix.
pub const PER_PREFIX: usize = 8;

/// Most unauthenticated connections in all.
pub const TOTAL: usize = 64;

/// The source a connection is counted under: an IPv4 address (/32), or the
/// first 64 bits of an IPv6 address (/64, what one subscriber usually gets).
/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) counts as
/// the IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The /64 of an IPv6 address.
    V6([u8; 8]),
}

impl Prefix {
    /// The prefix `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let octets = v6.octets();
                    let mut high = [0u8; 8];
                    high.copy_from_slice(&octets[..8]);
                    Self::V6(high)
                }
            },
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(octets) => write!(f, "{}/32", std::net::Ipv4Addr::from(*octets)),
            Self::V6(high) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(high);
                write!(f, "{}/64", std::net::Ipv6Addr::from(octets))
            }
        }
    }
}

/// How far an unauthenticated connection has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Accepted; no complete ClientHello yet.
    Silent,
    /// A valid ClientHello; waiting for a transient key.
    WaitingForKey,
    /// ServerHello sent: the handshake is under way.
    Handshaking,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Silent => "no ClientHello yet",
            Self::WaitingForKey => "waiting for a transient key",
            Self::Handshaking => "in its handshake",
        })
    }
}

/// The caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections per prefix (at least 1).
    pub per_prefix: usize,
    /// Most connections in all (at least 1).
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_prefix: PER_PREFIX,
            total: TOTAL,
        }
    }
}

/// Why a connection was dropped for a newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The newcomer's prefix held its cap: its oldest connection went.
    PrefixFull,
    /// All connections were taken: one from the fullest prefix went.
    TotalFull,
}

/// A connection dropped to make room, with what the caller stored for it.
#[derive(Debug)]
pub struct Dropped<T> {
    /// Its id.
    pub id: u64,
    /// Its prefix.
    pub prefix: Prefix,
    /// How far it had come.
    pub stage: Stage,
    /// Why it went.
    pub why: Why,
    /// The caller's handle (a socket, in the server).
    pub handle: T,
}

/// The result of [`Table::admit`].
#[derive(Debug)]
pub struct Admitted<T> {
    /// The newcomer's id.
    pub id: u64,
    /// The connection dropped to make room, if the caps were full.
    pub dropped: Option<Dropped<T>>,
}

struct Entry<T> {
    id: u64,
    prefix: Prefix,
    stage: Stage,
    handle: T,
}

/// The unauthenticated connections, oldest first.
pub struct Table<T> {
    limits: Limits,
    next_id: u64,
    entries: Vec<Entry<T>>,
}

impl<T> Table<T> {
    /// An empty table.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                per_prefix: limits.per_prefix.max(1),
                total: limits.total.max(1),
            },
            next_id: 1,
            entries: Vec::new(),
        }
    }

    /// Counts in a new connection from `prefix`, dropping another if the
    /// caps are full (see the module's rules). `pick(n)` chooses one of `n`
    /// equally eligible victims (a random index below `n`).
    pub fn admit(
        &mut self,
        prefix: Prefix,
        handle: T,
        pick: impl FnOnce(usize) -> usize,
    ) -> Admitted<T> {
        let dropped = if self.count(prefix) >= self.limits.per_prefix {
            let victim = self.earliest(|e| e.prefix == prefix).into_iter().next();
            victim.map(|index| self.take(index, Why::PrefixFull))
        } else if self.entries.len() >= self.limits.total {
            let most = self
                .entries
                .iter()
                .map(|e| self.count(e.prefix))
                .max()
                .unwrap_or(0);
            let fullest: Vec<Prefix> = self
                .entries
                .iter()
                .map(|e| e.prefix)
                .filter(|&p| self.count(p) == most)
                .collect();
            let candidates = self.earliest(|e| fullest.contains(&e.prefix));
            let chosen = pick(candidates.len()).min(candidates.len().saturating_sub(1));
            candidates
                .get(chosen)
                .copied()
                .map(|index| self.take(index, Why::TotalFull))
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            prefix,
            stage: Stage::Silent,
            handle,
        });
        Admitted { id, dropped }
    }

    /// Indices of the entries that match, at the earliest stage any of them
    /// is at, oldest first.
    fn earliest(&self, matches: impl Fn(&Entry<T>) -> bool) -> Vec<usize> {
        let stage = self
            .entries
            .iter()
            .filter(|e| matches(e))
            .map(|e| e.stage)
            .min();
        (0..self.entries.len())
            .filter(|&i| matches(&self.entries[i]) && Some(self.entries[i].stage) == stage)
            .collect()
    }

    fn take(&mut self, index: usize, why: Why) -> Dropped<T> {
        let entry = self.entries.remove(index);
        Dropped {
            id: entry.id,
            prefix: entry.prefix,
            stage: entry.stage,
            why,
            handle: entry.handle,
        }
    }

    /// Records that connection `id` has come to `stage`. False if it is no
    /// longer counted (it was dropped): the caller must give up on it.
    pub fn advance(&mut self, id: u64, stage: Stage) -> bool {
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(entry) => {
                entry.stage = entry.stage.max(stage);
                true
            }
            None => false,
        }
    }

    /// Counts connection `id` out (its handshake is over, either way).
    /// `None` if it was not counted (any more).
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let index = self.entries.iter().position(|e| e.id == id)?;
        Some(self.entries.remove(index).handle)
    }

    /// Connections counted from `prefix`.
    pub fn count(&self, prefix: Prefix) -> usize {
        self.entries.iter().filter(|e| e.prefix == prefix).count()
    }

    /// Connections counted in all.
    pub fn total(&self) -> usize {
        self.entries.len()
    }

    /// The caps.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> Prefix {
        Prefix::of(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn prefixes() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Prefix::of(a), Prefix::of(b), "one /64");
        assert_ne!(Prefix::of(a), Prefix::of(c));
        assert_eq!(Prefix::of(a).to_string(), "2001:db8:1:2::/64");
        assert_ne!(v4(2), v4(3), "IPv4: one address each");
        assert_eq!(v4(2).to_string(), "127.0.0.2/32");
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(Prefix::of(mapped), v4(2));
        assert_eq!(Prefix::of("::1".parse().unwrap()).to_string(), "::/64");
    }

    /// One row: the connections already counted (prefix, stage), oldest
    /// first; the newcomer's prefix; what `pick` answers; and which of the
    /// counted connections (by position) is dropped, and why.
    struct Row {
        what: &'static str,
        counted: Vec<(u8, Stage)>,
        newcomer: u8,
        pick: usize,
        dropped: Option<(usize, Why)>,
    }

    use Stage::{Handshaking as H, Silent as S, WaitingForKey as W};

    fn rows() -> Vec<Row> {
        // Small caps for readable rows: 3 per prefix, 6 in all.
        let full_of = |prefixes: &[u8], stage: Stage| -> Vec<(u8, Stage)> {
            prefixes
                .iter()
                .flat_map(|&p| std::iter::repeat_n((p, stage), 3))
                .collect()
        };
        vec![
            Row {
                what: "room for everyone: nobody is dropped",
                counted: vec![(2, S), (2, S), (3, S)],
                newcomer: 4,
                pick: 0,
                dropped: None,
            },
            Row {
                what: "own prefix full: its oldest goes",
                counted: vec![(2, S), (3, S), (2, S), (2, S)],
                newcomer: 2,
                pick: 0,
                dropped: Some((0, Why::PrefixFull)),
            },
            Row {
                what: "own prefix full: the oldest of the earliest stage goes",
                counted: vec![(2, H), (2, W), (2, S)],
                newcomer: 2,
                pick: 0,
                dropped: Some((2, Why::PrefixFull)),
            },
            Row {
                what: "own prefix full: waiting for a key goes before handshaking",
                counted: vec![(2, H), (2, W), (2, W)],
                newcomer: 2,
                pick: 0,
                dropped: Some((1, Why::PrefixFull)),
            },
            Row {
                what: "own prefix full of handshakes: the oldest handshake goes",
                counted: vec![(2, H), (2, H), (2, H)],
                newcomer: 2,
                pick: 0,
                dropped: Some((0, Why::PrefixFull)),
            },
            Row {
                what: "own prefix full while the total is full too: still its own",
                counted: full_of(&[2, 3], S),
                newcomer: 3,
                pick: 0,
                dropped: Some((3, Why::PrefixFull)),
            },
            Row {
                what: "total full, a newcomer from elsewhere: one of the fullest prefix goes",
                counted: vec![(2, S), (3, S), (3, S), (3, S), (4, S), (4, S)],
                newcomer: 5,
                pick: 1,
                dropped: Some((2, Why::TotalFull)),
            },
            Row {
                what: "total full, two fullest prefixes: pick chooses among both",
                counted: full_of(&[2, 3], S),
                newcomer: 5,
                pick: 4,
                dropped: Some((4, Why::TotalFull)),
            },
            Row {
                what: "total full: silent ones of the fullest go before its handshakes",
                counted: vec![(2, H), (2, H), (2, S), (3, S), (3, H), (4, S)],
                newcomer: 5,
                pick: 0,
                dropped: Some((2, Why::TotalFull)),
            },
            Row {
                what: "total full of one each (many prefixes): the earliest stage, at random",
                counted: vec![(2, H), (3, W), (4, S), (5, H), (6, S), (7, W)],
                newcomer: 8,
                pick: 1,
                dropped: Some((4, Why::TotalFull)),
            },
            Row {
                what: "a pick out of range is clamped",
                counted: vec![(2, H), (3, W), (4, S), (5, H), (6, S), (7, W)],
                newcomer: 8,
                pick: 99,
                dropped: Some((4, Why::TotalFull)),
            },
        ]
    }

    #[test]
    fn who_is_dropped_when_the_caps_are_full() {
        for row in rows() {
            let mut table = Table::new(Limits {
                per_prefix: 3,
                total: 6,
            });
            let mut ids = Vec::new();
            for &(prefix, stage) in &row.counted {
                let admitted = table.admit(v4(prefix), ids.len(), |_| 0);
                assert!(admitted.dropped.is_none(), "{}: setting up", row.what);
                assert!(table.advance(admitted.id, stage));
                ids.push(admitted.id);
            }
            let admitted = table.admit(v4(row.newcomer), usize::MAX, |n| {
                assert!(n > 0, "{}: pick among none", row.what);
                row.pick
            });
            let dropped = admitted.dropped.map(|d| {
                assert_eq!(d.id, ids[d.handle], "{}: handle and id", row.what);
                assert_eq!(d.stage, row.counted[d.handle].1, "{}: stage", row.what);
                (d.handle, d.why)
            });
            assert_eq!(dropped, row.dropped, "{}", row.what);
            let expected = row.counted.len() + 1 - usize::from(row.dropped.is_some());
            assert_eq!(table.total(), expected, "{}: total", row.what);
            assert!(table.total() <= 6 && table.count(v4(row.newcomer)) <= 3);
        }
    }

    /// The scenario at the real caps: 64 silent connections from
    /// 127.0.0.2 to 127.0.0.9 fill everything; a peer from 127.0.0.1 is
    /// admitted, and each flooding prefix, reconnecting, only displaces
    /// itself.
    #[test]
    fn silent_connections_cannot_hold_the_door_shut() {
        let mut table = Table::new(Limits::default());
        for prefix in 2..=9 {
            for _ in 0..PER_PREFIX {
                assert!(table.admit(v4(prefix), prefix, |_| 0).dropped.is_none());
            }
        }
        assert_eq!(table.total(), TOTAL);
        let peer = table.admit(v4(1), 1, |n| n - 1);
        let dropped = peer.dropped.expect("someone makes room");
        assert_eq!(dropped.why, Why::TotalFull);
        assert_eq!(table.total(), TOTAL);
        assert!(table.advance(peer.id, Stage::WaitingForKey));
        // The flood goes on from every prefix: each newcomer of a full
        // prefix displaces the oldest of its own, never the peer.
        for round in 0..10 {
            for prefix in 2..=9 {
                let again = table.admit(v4(prefix), prefix, |_| round);
                if let Some(d) = again.dropped {
                    assert_ne!(d.prefix, v4(1));
                }
            }
        }
        assert!(table.advance(peer.id, Stage::Handshaking), "the peer stays");
        assert_eq!(table.remove(peer.id), Some(1));
        assert_eq!(table.remove(peer.id), None);
        assert!(!table.advance(peer.id, Stage::Handshaking));
    }

    #[test]
    fn stages_only_move_forward() {
        let mut table = Table::new(Limits::default());
        let id = table.admit(v4(2), (), |_| 0).id;
        assert!(table.advance(id, Stage::Handshaking));
        assert!(table.advance(id, Stage::Silent));
        // Still counted as handshaking: a silent newcomer of a full prefix
        // would go first.
        for _ in 1..PER_PREFIX {
            table.admit(v4(2), (), |_| 0);
        }
        let next = table.admit(v4(2), (), |_| 0);
        assert_ne!(next.dropped.unwrap().id, id);
    }
}
