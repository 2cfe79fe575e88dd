//! Who is waiting for whom: the relay's rooms and its connections without a
//! partner, and the rules that pair, replace, evict and refuse them. Pure:
//! the connections are handles of any type `H` (in the server, the sending
//! end of a channel to the connection's task), and nothing here does I/O.
//!
//! The rules (`docs/PROTOCOL.md`, "Relay"):
//! * a room has at most one waiting `serve`; a newer `serve` takes its place,
//!   and the older one is answered `replaced` if its side differs, or closed
//!   without an answer if it is the same server renewing (same side);
//! * a `connect` pairs with the room's waiting `serve`, or waits behind the
//!   room's earlier `connect`s; a `serve` pairs with the oldest of those;
//! * a pairing that would break a circuit cap refuses the newcomer (`busy`
//!   for a source's cap, `full` for the total), and the other side keeps
//!   waiting;
//! * every connection is unpaired from the moment it is accepted until it is
//!   paired or gone; a source may hold only so many (`busy`), and when the
//!   relay holds too many in total, the oldest is evicted (`full`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use super::limits::{Limits, Source, SourceRefusal, Sources};
use crate::wire::relay::{Answer, Request, Role, RoomId, Side};

/// A connection's number; later connections have larger ones, so the
/// smallest unpaired one is the oldest.
pub type ConnId = u64;

/// What a displaced `serve` registration is told.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Displaced {
    /// Another side registered the room: answer `replaced`.
    Replaced,
    /// The same side registered again (a renewal): close without an answer.
    Renewed,
}

/// The verdict on a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<H> {
    /// Counted in. If the relay held too many unpaired connections, the
    /// oldest was evicted and must be answered `full`.
    Admitted {
        /// The new connection's number.
        id: ConnId,
        /// The evicted connection's handle.
        evicted: Option<H>,
    },
    /// Refused with `busy` (its source is over a limit); nothing counted.
    Refused(SourceRefusal),
}

/// Both ends of an open circuit, for [`Registry::close_circuit`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Circuit {
    sources: (Source, Source),
}

/// The verdict on a request line.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration<H> {
    /// Paired with a waiting connection, which is no longer registered: hand
    /// it this connection. Call [`Registry::close_circuit`] when it ends.
    Paired {
        /// The partner's handle.
        partner: H,
        /// What to release when the circuit ends.
        circuit: Circuit,
    },
    /// Waiting for a partner. A `serve` that took the place of another
    /// returns the older one's handle and what it must be told.
    Waiting {
        /// The displaced registration.
        displaced: Option<(H, Displaced)>,
    },
    /// Refused: the newcomer gets this answer and is no longer registered.
    Refused(Answer),
    /// The connection was evicted before its line was judged; its handle
    /// already carries the news.
    Gone,
}

#[derive(Debug)]
struct Unpaired<H> {
    source: Source,
    handle: H,
    /// Set once the line is in and the connection waits in a room.
    room: Option<RoomId>,
}

#[derive(Debug)]
enum Room {
    /// One `serve` registration waits.
    Serve { id: ConnId, side: Side },
    /// `connect`s wait, oldest first (never empty).
    Connects(VecDeque<ConnId>),
}

/// Counts for the periodic summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Connections without a partner (reading their line, or waiting).
    pub unpaired: usize,
    /// Waiting `serve` registrations.
    pub serves: usize,
    /// Waiting `connect`s.
    pub connects: usize,
    /// Open circuits.
    pub circuits: usize,
}

/// The relay's pairing state.
#[derive(Debug)]
pub struct Registry<H> {
    unpaired_cap: usize,
    circuits_cap: usize,
    sources: Sources,
    unpaired: BTreeMap<ConnId, Unpaired<H>>,
    rooms: HashMap<RoomId, Room>,
    serves: usize,
    connects: usize,
    circuits: usize,
    next_id: ConnId,
}

impl<H> Registry<H> {
    /// An empty relay under `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            unpaired_cap: limits.unpaired.max(1),
            circuits_cap: limits.circuits,
            sources: Sources::new(limits),
            unpaired: BTreeMap::new(),
            rooms: HashMap::new(),
            serves: 0,
            connects: 0,
            circuits: 0,
            next_id: 0,
        }
    }

    /// A connection from `source` was accepted at `now`.
    pub fn admit(&mut self, source: Source, now: Instant, handle: H) -> Admission<H> {
        if let Err(refusal) = self.sources.admit(source, now) {
            return Admission::Refused(refusal);
        }
        let evicted = if self.unpaired.len() >= self.unpaired_cap {
            self.unpaired
                .first_key_value()
                .map(|(&oldest, _)| oldest)
                .and_then(|oldest| self.remove(oldest))
                .map(|gone| gone.handle)
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.unpaired.insert(
            id,
            Unpaired {
                source,
                handle,
                room: None,
            },
        );
        Admission::Admitted { id, evicted }
    }

    /// Connection `id` sent `request`.
    pub fn register(&mut self, id: ConnId, request: &Request) -> Registration<H> {
        let Some(me) = self.unpaired.get(&id) else {
            return Registration::Gone;
        };
        debug_assert!(me.room.is_none(), "one line per connection");
        let source = me.source;
        let partner = match (self.rooms.get(&request.room), request.role) {
            (Some(Room::Serve { id, .. }), Role::Connect) => Some(*id),
            (Some(Room::Connects(queue)), Role::Serve) => queue.front().copied(),
            _ => None,
        };
        if let Some(partner) = partner {
            let partner_source = self.unpaired[&partner].source;
            let refusal = if self.circuits >= self.circuits_cap {
                Some(Answer::Full)
            } else if !self.sources.circuit_allowed(source, partner_source) {
                Some(Answer::Busy)
            } else {
                None
            };
            if let Some(answer) = refusal {
                self.remove(id);
                return Registration::Refused(answer);
            }
            self.remove(id);
            let partner = self.remove(partner).expect("the partner is unpaired");
            self.circuits += 1;
            self.sources.circuit_opened(source, partner_source);
            return Registration::Paired {
                partner: partner.handle,
                circuit: Circuit {
                    sources: (source, partner_source),
                },
            };
        }
        let displaced = match request.role {
            Role::Serve => {
                let older = match self.rooms.get(&request.room) {
                    Some(&Room::Serve { id: older, side }) => Some((older, side)),
                    _ => None,
                };
                let displaced = older.and_then(|(older, side)| {
                    let kind = if side == request.side {
                        Displaced::Renewed
                    } else {
                        Displaced::Replaced
                    };
                    self.remove(older).map(|gone| (gone.handle, kind))
                });
                self.rooms.insert(
                    request.room,
                    Room::Serve {
                        id,
                        side: request.side,
                    },
                );
                self.serves += 1;
                displaced
            }
            Role::Connect => {
                match self
                    .rooms
                    .entry(request.room)
                    .or_insert_with(|| Room::Connects(VecDeque::new()))
                {
                    Room::Connects(queue) => {
                        queue.push_back(id);
                        self.connects += 1;
                    }
                    Room::Serve { .. } => unreachable!("a waiting serve pairs at once"),
                }
                None
            }
        };
        self.unpaired.get_mut(&id).expect("checked above").room = Some(request.room);
        Registration::Waiting { displaced }
    }

    /// Connection `id` leaves without a partner (closed, timed out, or
    /// refused). False if it was no longer registered: it was paired,
    /// displaced or evicted, and its handle carries the news.
    pub fn leave(&mut self, id: ConnId) -> bool {
        self.remove(id).is_some()
    }

    /// A circuit ended.
    pub fn close_circuit(&mut self, circuit: Circuit) {
        self.circuits = self.circuits.saturating_sub(1);
        let (a, b) = circuit.sources;
        self.sources.circuit_closed(a, b);
    }

    /// Forgets per-source state that no longer matters (see
    /// [`Sources::sweep`]).
    pub fn sweep(&mut self, now: Instant) {
        self.sources.sweep(now);
    }

    /// Current counts.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            unpaired: self.unpaired.len(),
            serves: self.serves,
            connects: self.connects,
            circuits: self.circuits,
        }
    }

    /// Takes connection `id` out of the unpaired set and out of its room.
    fn remove(&mut self, id: ConnId) -> Option<Unpaired<H>> {
        let gone = self.unpaired.remove(&id)?;
        self.sources.unpaired_done(gone.source);
        if let Some(room) = gone.room {
            match self.rooms.get_mut(&room) {
                Some(Room::Serve { id: waiting, .. }) if *waiting == id => {
                    self.rooms.remove(&room);
                    self.serves -= 1;
                }
                Some(Room::Connects(queue)) => {
                    let before = queue.len();
                    queue.retain(|&waiting| waiting != id);
                    self.connects -= before - queue.len();
                    if queue.is_empty() {
                        self.rooms.remove(&room);
                    }
                }
                _ => {}
            }
        }
        Some(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use crate::wire::relay::{Role, RoomId, Side};

    fn source(n: u8) -> Source {
        Source::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    fn request(role: Role, room: u8, side: u8) -> Request {
        Request {
            role,
            room: RoomId::from_bytes([room; 32]),
            side: Side::from_bytes([side; 8]),
        }
    }

    fn roomy() -> Limits {
        Limits {
            new_per_minute: 1000,
            ..Limits::default()
        }
    }

    /// Admits a connection whose handle is its name.
    fn admit(r: &mut Registry<&'static str>, from: u8, name: &'static str) -> ConnId {
        match r.admit(source(from), Instant::now(), name) {
            Admission::Admitted { id, evicted: None } => id,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn connect_pairs_with_the_waiting_serve() {
        let mut r = Registry::new(&roomy());
        let s = admit(&mut r, 1, "s");
        let c = admit(&mut r, 2, "c");
        assert_eq!(
            r.register(s, &request(Role::Serve, 7, 1)),
            Registration::Waiting { displaced: None }
        );
        assert_eq!(
            r.gauges(),
            Gauges {
                unpaired: 2,
                serves: 1,
                connects: 0,
                circuits: 0
            }
        );
        let Registration::Paired { partner, circuit } =
            r.register(c, &request(Role::Connect, 7, 2))
        else {
            panic!("not paired")
        };
        assert_eq!(partner, "s");
        assert_eq!(
            r.gauges(),
            Gauges {
                unpaired: 0,
                serves: 0,
                connects: 0,
                circuits: 1
            }
        );
        assert!(!r.leave(s) && !r.leave(c), "neither is unpaired any more");
        r.close_circuit(circuit);
        assert_eq!(r.gauges(), Gauges::default());
    }

    #[test]
    fn connects_wait_in_order_and_serves_take_the_oldest() {
        let mut r = Registry::new(&roomy());
        let c1 = admit(&mut r, 2, "c1");
        let c2 = admit(&mut r, 3, "c2");
        let other = admit(&mut r, 3, "other room");
        for (id, room) in [(c1, 7), (c2, 7), (other, 8)] {
            assert_eq!(
                r.register(id, &request(Role::Connect, room, 9)),
                Registration::Waiting { displaced: None }
            );
        }
        assert_eq!(r.gauges().connects, 3);
        for expected in ["c1", "c2"] {
            let s = admit(&mut r, 1, "s");
            match r.register(s, &request(Role::Serve, 7, 1)) {
                Registration::Paired { partner, .. } => assert_eq!(partner, expected),
                other => panic!("{other:?}"),
            }
        }
        let s = admit(&mut r, 1, "s");
        assert_eq!(
            r.register(s, &request(Role::Serve, 7, 1)),
            Registration::Waiting { displaced: None },
            "no connect left in room 7"
        );
    }

    #[test]
    fn a_newer_serve_replaces_the_older() {
        let mut r = Registry::new(&roomy());
        let old = admit(&mut r, 1, "old");
        let new = admit(&mut r, 2, "new");
        let renewed = admit(&mut r, 2, "renewed");
        r.register(old, &request(Role::Serve, 7, 1));
        assert_eq!(
            r.register(new, &request(Role::Serve, 7, 2)),
            Registration::Waiting {
                displaced: Some(("old", Displaced::Replaced))
            }
        );
        assert_eq!(
            r.register(renewed, &request(Role::Serve, 7, 2)),
            Registration::Waiting {
                displaced: Some(("new", Displaced::Renewed))
            }
        );
        assert_eq!(r.gauges().serves, 1);
        assert!(!r.leave(old) && !r.leave(new));
        let c = admit(&mut r, 3, "c");
        match r.register(c, &request(Role::Connect, 7, 3)) {
            Registration::Paired { partner, .. } => assert_eq!(partner, "renewed"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leaving_frees_the_room() {
        let mut r = Registry::new(&roomy());
        let s = admit(&mut r, 1, "s");
        r.register(s, &request(Role::Serve, 7, 1));
        assert!(r.leave(s));
        assert_eq!(r.gauges(), Gauges::default());
        let c = admit(&mut r, 2, "c");
        assert_eq!(
            r.register(c, &request(Role::Connect, 7, 2)),
            Registration::Waiting { displaced: None }
        );
        assert!(r.leave(c));
        let s = admit(&mut r, 1, "s2");
        assert_eq!(
            r.register(s, &request(Role::Serve, 7, 1)),
            Registration::Waiting { displaced: None },
            "the connect that left is not paired"
        );
    }

    #[test]
    fn per_source_unpaired_cap_refuses_and_total_cap_evicts_the_oldest() {
        let mut r = Registry::new(&Limits {
            unpaired_per_source: 2,
            unpaired: 3,
            ..roomy()
        });
        let first = admit(&mut r, 1, "first");
        admit(&mut r, 1, "second");
        assert_eq!(
            r.admit(source(1), Instant::now(), "third"),
            Admission::Refused(SourceRefusal::Unpaired)
        );
        admit(&mut r, 2, "fourth");
        match r.admit(source(3), Instant::now(), "fifth") {
            Admission::Admitted {
                evicted: Some(evicted),
                ..
            } => assert_eq!(evicted, "first"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.gauges().unpaired, 3);
        assert_eq!(
            r.register(first, &request(Role::Serve, 7, 1)),
            Registration::Gone
        );
        match r.admit(source(1), Instant::now(), "sixth") {
            Admission::Admitted { evicted, .. } => {
                assert_eq!(evicted, Some("second"), "source 1 has room again")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eviction_takes_a_waiting_serve_out_of_its_room() {
        let mut r = Registry::new(&Limits {
            unpaired: 1,
            ..roomy()
        });
        let s = admit(&mut r, 1, "s");
        r.register(s, &request(Role::Serve, 7, 1));
        let c = match r.admit(source(2), Instant::now(), "c") {
            Admission::Admitted { id, evicted } => {
                assert_eq!(evicted, Some("s"));
                id
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(r.gauges().serves, 0);
        assert_eq!(
            r.register(c, &request(Role::Connect, 7, 2)),
            Registration::Waiting { displaced: None }
        );
    }

    #[test]
    fn circuit_caps_refuse_the_newcomer_and_keep_the_waiting_one() {
        let mut r = Registry::new(&Limits {
            circuits: 2,
            circuits_per_source: 1,
            ..roomy()
        });
        let pair = |r: &mut Registry<&'static str>, s_from, c_from, room| {
            let s = admit(r, s_from, "s");
            let c = admit(r, c_from, "c");
            r.register(s, &request(Role::Serve, room, 1));
            r.register(c, &request(Role::Connect, room, 2))
        };
        let Registration::Paired { circuit, .. } = pair(&mut r, 1, 2, 7) else {
            panic!()
        };
        assert_eq!(pair(&mut r, 1, 3, 8), Registration::Refused(Answer::Busy));
        assert_eq!(r.gauges().serves, 1, "the serve of room 8 still waits");
        assert_eq!(pair(&mut r, 3, 2, 9), Registration::Refused(Answer::Busy));
        assert!(matches!(
            pair(&mut r, 3, 4, 10),
            Registration::Paired { .. }
        ));
        assert_eq!(pair(&mut r, 5, 6, 11), Registration::Refused(Answer::Full));
        r.close_circuit(circuit);
        let c = admit(&mut r, 6, "c");
        assert!(matches!(
            r.register(c, &request(Role::Connect, 11, 2)),
            Registration::Paired { partner: "s", .. }
        ));
    }

    #[test]
    fn rate_refusals_do_not_count_as_unpaired() {
        let mut r = Registry::new(&Limits {
            new_per_minute: 1,
            ..Limits::default()
        });
        let now = Instant::now();
        assert!(matches!(
            r.admit(source(1), now, "a"),
            Admission::Admitted { .. }
        ));
        assert_eq!(
            r.admit(source(1), now, "b"),
            Admission::Refused(SourceRefusal::Rate)
        );
        assert_eq!(r.gauges().unpaired, 1);
        assert!(matches!(
            r.admit(source(1), now + Duration::from_secs(60), "c"),
            Admission::Admitted { .. }
        ));
    }
}
