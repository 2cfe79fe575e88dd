//! Transient keys made ahead of time: background threads keep [`READY`]
//! fresh 2048-bit keys waiting, so that a peer arriving at human pace never
//! waits for key generation. Each key is handed out once and lives only in
//! memory.
//!
//! A ClientHello costs its sender nothing and costs us a key, which takes a
//! core for 60 ms or more to make. So that a flood of them drains the pool
//! and not the CPU:
//!
//! * **Bounded refill.** A key starts at most every 1/[`KEYS_PER_SECOND`]
//!   seconds, however many are wanted: about a fifth of one core at most
//!   (`CHAT_TRANSIENT_KEY_RATE` sets another rate). Keys are made only
//!   while fewer than [`READY`] wait, so an idle server makes none.
//! * **Fair share.** Handshakes that find no key ready wait in line. Each
//!   new key goes to the waiting source prefix that has wasted the fewest
//!   keys lately (keys it was given that did not lead to a completed
//!   handshake, less those that did; the count halves every
//!   [`DEBT_HALF_LIFE`], and a prefix that completed a handshake lately
//!   comes before one never seen), and among those to the one served
//!   longest ago (a prefix never served comes first). A
//!   prefix that floods ClientHellos runs up a debt and waits behind
//!   everyone who completes handshakes; several such prefixes take turns;
//!   and the last two ready keys are kept from them, so that a peer that
//!   completes its handshakes finds a key ready.
//! * **Forward secrecy as before.** A key that was handed out is never
//!   handed out again, unless it went back unseen (its connection was
//!   dropped before its ServerHello was sent).
//!
//! docs/PERFORMANCE.md has the figures behind these numbers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::admission::Prefix;
use crate::crypto::PrivateKey;
use crate::protocol::TRANSIENT_BITS;

/// Keys kept ready.
pub const READY: usize = 4;

/// Threads that make keys (the second one helps only when the rate allows
/// more than one core's worth, as in the tests, and when an idle pool
/// refills).
const GENERATORS: usize = 2;

/// Most keys started per second, unless `CHAT_TRANSIENT_KEY_RATE` says
/// otherwise.
pub const KEYS_PER_SECOND: f64 = 3.0;

/// Prefixes remembered for the fair share; those served longest ago are
/// forgotten first (and then count as never served, with no debt).
const REMEMBERED: usize = 1024;

/// Keys kept back from prefixes that waste keys (see [`may_take`]).
const KEPT_BACK: usize = 2;

/// A key that only prefixes that waste keys wait for starts at most this
/// often: a flood from a few prefixes gets a key a second, not the full
/// rate, while peers that complete their handshakes still get the full
/// rate.
pub const WASTERS_INTERVAL: Duration = Duration::from_secs(1);

/// Whether a prefix whose debt (rounded) is `debt` may take one of `ready`
/// keys, in a pool that keeps `target` ready: the last key is kept for a
/// prefix that completed a handshake lately, the one before it for a prefix
/// that has wasted none, so that during a flood a peer who comes back (or a
/// new one, once the flooders have wasted keys) finds a key ready instead
/// of waiting for one to be made. It costs nothing: the kept keys are made
/// once. A pool of fewer than three keeps none back (it would never make
/// the keys that let the others through).
fn may_take(debt: i64, ready: usize, target: usize) -> bool {
    match ready {
        0 => false,
        _ if target < 3 => true,
        1 => debt < 0,
        2 => debt <= 0,
        _ => true,
    }
}

/// A prefix's debt (keys wasted) halves in this time.
pub const DEBT_HALF_LIFE: Duration = Duration::from_secs(60);

/// What the pool remembers of a source prefix.
#[derive(Clone, Copy, Debug, Default)]
struct Account {
    /// The number of the last grant it had (0: never served).
    last_served: u64,
    /// Keys it was given that have not led to a completed handshake, less
    /// one for each handshake it completed (but never more than one key in
    /// credit), as of `at`, decaying with [`DEBT_HALF_LIFE`]: a prefix that
    /// completes every handshake stays at -1 between them and 0 during
    /// one; a prefix never seen is at 0.
    debt: f64,
    at: Option<Instant>,
}

impl Account {
    fn debt(&self, now: Instant) -> f64 {
        self.at.map_or(0.0, |at| {
            let halves =
                now.saturating_duration_since(at).as_secs_f64() / DEBT_HALF_LIFE.as_secs_f64();
            self.debt * 0.5f64.powf(halves)
        })
    }

    /// Adds to the debt (a key given) or takes from it (a handshake
    /// completed); a prefix can be owed one key at most.
    fn add_debt(&mut self, delta: f64, now: Instant) {
        self.debt = (self.debt(now) + delta).max(-1.0);
        self.at = Some(now);
    }
}

/// The refill rate in force: `CHAT_TRANSIENT_KEY_RATE` (keys per second,
/// 0.1 to 100 000; the tests raise it to run hundreds of handshakes), or
/// [`KEYS_PER_SECOND`].
pub fn key_rate() -> f64 {
    static VALUE: OnceLock<f64> = OnceLock::new();
    *VALUE.get_or_init(|| {
        std::env::var("CHAT_TRANSIENT_KEY_RATE")
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|rate| rate.is_finite() && (0.1..=100_000.0).contains(rate))
            .unwrap_or(KEYS_PER_SECOND)
    })
}

/// A supply of fresh transient keys.
pub struct TransientPool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the waiters: a key was granted, or taken back, or the pool
    /// closes.
    changed: Condvar,
    /// Wakes the generators: someone waits for a key now, or the pool
    /// closes.
    wanted: Condvar,
}

/// A handshake waiting for a key.
struct Waiter {
    ticket: u64,
    prefix: Prefix,
}

/// Spaces the starts of key generations: a token bucket of `burst` starts
/// (one per generator, so that an idle pool refills on both cores), one more
/// every `interval`.
struct Pacer {
    interval: Duration,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Pacer {
    fn new(interval: Duration, burst: usize) -> Self {
        Self {
            interval,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: None,
        }
    }

    /// Starts allowed at `now` (fractions count towards the next).
    fn tokens(&self, now: Instant) -> f64 {
        if self.interval.is_zero() {
            return self.burst;
        }
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        (self.tokens + elapsed.as_secs_f64() / self.interval.as_secs_f64()).min(self.burst)
    }

    /// When the next key may start, if one is wanted at `now`.
    fn earliest(&self, now: Instant) -> Instant {
        let tokens = self.tokens(now);
        if tokens >= 1.0 {
            now
        } else {
            now + self.interval.mul_f64(1.0 - tokens)
        }
    }

    /// Records a start at `now`.
    fn started(&mut self, now: Instant) {
        self.tokens = self.tokens(now) - 1.0;
        self.last = Some(now);
    }
}

struct State {
    ready: Vec<PrivateKey>,
    target: usize,
    in_progress: usize,
    /// In arrival order.
    waiting: Vec<Waiter>,
    /// Keys given to waiters (ticket, prefix) that have not picked them up
    /// yet.
    granted: Vec<(u64, Prefix, PrivateKey)>,
    /// What is known of each prefix.
    accounts: HashMap<Prefix, Account>,
    grants: u64,
    pacer: Pacer,
    /// When a key wanted only by prefixes that waste keys may start.
    wasters_next: Instant,
    closed: bool,
}

impl State {
    fn new(target: usize, interval: Duration) -> Self {
        Self {
            ready: Vec::with_capacity(target),
            target: target.max(1),
            in_progress: 0,
            waiting: Vec::new(),
            granted: Vec::new(),
            accounts: HashMap::new(),
            grants: 0,
            pacer: Pacer::new(interval, target.min(GENERATORS)),
            wasters_next: Instant::now(),
            closed: false,
        }
    }

    /// Whether another key should be made (pacing aside).
    fn wants_key(&self) -> bool {
        self.ready.len() + self.in_progress < self.target
    }

    /// Whether the next key would only go to prefixes that waste keys:
    /// the keys kept back for the others are there or coming, and everyone
    /// waiting has wasted keys.
    fn for_wasters_only(&self, now: Instant) -> bool {
        !self.waiting.is_empty()
            && self.ready.len() + self.in_progress >= KEPT_BACK
            && self.waiting.iter().all(|w| {
                let account = self.accounts.get(&w.prefix).copied().unwrap_or_default();
                account.debt(now).round() > 0.0
            })
    }

    /// When the next key may start, if one is wanted: at the pacer's rate,
    /// and no sooner than [`WASTERS_INTERVAL`] after the last one if only
    /// prefixes that waste keys would get it.
    fn next_start(&self, now: Instant) -> Option<Instant> {
        if !self.wants_key() {
            return None;
        }
        let at = self.pacer.earliest(now);
        Some(if self.for_wasters_only(now) {
            at.max(self.wasters_next)
        } else {
            at
        })
    }

    /// Records that a key starts now.
    fn start(&mut self, now: Instant) {
        if self.for_wasters_only(now) {
            self.wasters_next = now + WASTERS_INTERVAL;
        }
        self.pacer.started(now);
        self.in_progress += 1;
    }

    /// The waiter to serve next, and how many keys its prefix wasted
    /// (rounded): of the prefix that wasted the fewest, then served longest
    /// ago (never served first), then the first to arrive.
    fn next_waiter(&self, now: Instant) -> Option<(usize, i64)> {
        (0..self.waiting.len())
            .map(|i| {
                let account = self.accounts.get(&self.waiting[i].prefix);
                let account = account.copied().unwrap_or_default();
                (account.debt(now).round() as i64, account.last_served, i)
            })
            .min()
            .map(|(debt, _, i)| (i, debt))
    }

    /// Hands ready keys to waiters, keeping the last ones as [`may_take`]
    /// says. True if any was handed.
    fn dispatch(&mut self, now: Instant) -> bool {
        let mut any = false;
        while !self.ready.is_empty() {
            let Some((index, debt)) = self.next_waiter(now) else {
                break;
            };
            if !may_take(debt, self.ready.len(), self.target) {
                break;
            }
            let waiter = self.waiting.remove(index);
            self.grants += 1;
            let account = self.accounts.entry(waiter.prefix).or_default();
            account.last_served = self.grants;
            account.add_debt(1.0, now);
            let key = self.ready.pop().expect("checked above");
            self.granted.push((waiter.ticket, waiter.prefix, key));
            any = true;
        }
        if self.accounts.len() > REMEMBERED {
            let mut serials: Vec<u64> = self.accounts.values().map(|a| a.last_served).collect();
            serials.sort_unstable();
            let cutoff = serials[serials.len() - REMEMBERED / 2];
            self.accounts.retain(|_, a| a.last_served >= cutoff);
        }
        any
    }

    /// A handshake from `prefix` completed: its key was not wasted, and
    /// the prefix is owed one (see [`Account::add_debt`]).
    fn completed(&mut self, prefix: Prefix, now: Instant) {
        if let Some(account) = self.accounts.get_mut(&prefix) {
            account.add_debt(-2.0, now);
        }
    }

    /// A key given to `prefix` came back unseen: not wasted.
    fn returned(&mut self, prefix: Prefix, now: Instant) {
        if let Some(account) = self.accounts.get_mut(&prefix) {
            account.add_debt(-1.0, now);
        }
    }

    /// The key granted to `ticket`, if any.
    fn pick_up(&mut self, ticket: u64) -> Option<PrivateKey> {
        let index = self.granted.iter().position(|(t, _, _)| *t == ticket)?;
        Some(self.granted.swap_remove(index).2)
    }

    fn is_waiting(&self, ticket: u64) -> bool {
        self.waiting.iter().any(|w| w.ticket == ticket)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TransientPool {
    /// Starts two generators that keep `ready` keys waiting, starting one
    /// at most every `interval` after a burst of two. The first runs at
    /// normal priority, the other at the lowest.
    pub fn start_with(ready: usize, interval: Duration) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(ready, interval)),
            changed: Condvar::new(),
            wanted: Condvar::new(),
        });
        for n in 0..GENERATORS {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("transient-keys".into())
                .spawn(move || generate(&shared, n == 0))
                .expect("spawn a key generator");
        }
        Self { shared }
    }

    /// A fresh key for the handshake `ticket` from `prefix`, waiting in
    /// line (see the module's fair share) until `deadline`. `None` at the
    /// deadline, or once `cancelled` is set and [`cancel`](Self::cancel)
    /// called for the ticket (in that order; a ticket cancelled before it
    /// queues does not wait).
    pub fn take(
        &self,
        ticket: u64,
        prefix: Prefix,
        deadline: Instant,
        cancelled: &AtomicBool,
    ) -> Option<PrivateKey> {
        let mut state = self.shared.state();
        state.waiting.push(Waiter { ticket, prefix });
        if state.dispatch(Instant::now()) {
            self.shared.changed.notify_all();
        }
        // A newcomer may need a key sooner than the flood before it.
        self.shared.wanted.notify_all();
        loop {
            if let Some(key) = state.pick_up(ticket) {
                if cancelled.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    state.ready.push(key);
                    state.returned(prefix, now);
                    state.dispatch(now);
                    self.shared.changed.notify_all();
                    return None;
                }
                return Some(key);
            }
            let now = Instant::now();
            if !state.is_waiting(ticket)
                || cancelled.load(Ordering::SeqCst)
                || now >= deadline
                || state.closed
            {
                state.waiting.retain(|w| w.ticket != ticket);
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the wait of `ticket`; a key granted to it and not yet picked
    /// up goes to the next in line.
    pub fn cancel(&self, ticket: u64) {
        let mut state = self.shared.state();
        state.waiting.retain(|w| w.ticket != ticket);
        if let Some(index) = state.granted.iter().position(|(t, _, _)| *t == ticket) {
            let (_, prefix, key) = state.granted.swap_remove(index);
            let now = Instant::now();
            state.ready.push(key);
            state.returned(prefix, now);
            state.dispatch(now);
        }
        self.shared.changed.notify_all();
    }

    /// Takes back a key given to `prefix` that nobody has seen (its
    /// connection went before the ServerHello was sent), for the next in
    /// line.
    pub fn give_back(&self, key: PrivateKey, prefix: Prefix) {
        let mut state = self.shared.state();
        let now = Instant::now();
        state.ready.push(key);
        state.returned(prefix, now);
        state.dispatch(now);
        self.shared.changed.notify_all();
    }

    /// Records that a handshake from `prefix` completed: its key was not
    /// wasted, which keeps the prefix ahead of those that waste theirs.
    pub fn completed(&self, prefix: Prefix) {
        self.shared.state().completed(prefix, Instant::now());
    }

    /// Keys ready now (for the log).
    pub fn ready(&self) -> usize {
        self.shared.state().ready.len()
    }
}

impl Drop for TransientPool {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.changed.notify_all();
        self.shared.wanted.notify_all();
    }
}

fn generate(shared: &Shared, first: bool) {
    if !first {
        lower_priority();
    }
    let mut rng = rand::rng();
    loop {
        {
            let mut state = shared.state();
            loop {
                if state.closed {
                    return;
                }
                let now = Instant::now();
                let Some(at) = state.next_start(now) else {
                    state = shared.wanted.wait(state).unwrap_or_else(|p| p.into_inner());
                    continue;
                };
                if at <= now {
                    state.start(now);
                    break;
                }
                state = shared
                    .wanted
                    .wait_timeout(state, at - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        let key =
            PrivateKey::generate(&mut rng, TRANSIENT_BITS).expect("2048 bits is a valid size");
        let mut state = shared.state();
        state.in_progress -= 1;
        state.ready.push(key);
        state.dispatch(Instant::now());
        shared.changed.notify_all();
    }
}

/// Lets this thread yield to handshakes and conversations (Linux gives each
/// thread its own niceness). Elsewhere the thread keeps normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their arguments; a failure
    // leaves the priority as it was, which is harmless.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn prefix(last: u8) -> Prefix {
        Prefix::of(IpAddr::from([127, 0, 0, last]))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn keys_are_fresh_and_2048_bits() {
        let pool = TransientPool::start_with(2, Duration::ZERO);
        let deadline = Instant::now() + secs(60);
        let no = AtomicBool::new(false);
        let a = pool.take(1, prefix(1), deadline, &no).unwrap();
        let b = pool.take(2, prefix(1), deadline, &no).unwrap();
        assert_eq!(a.public().bits(), 2048);
        assert_ne!(a.public(), b.public());
    }

    /// One row: the waiters (ticket, prefix) in arrival order; for some
    /// prefixes, the last grant they had and the keys they wasted; how many
    /// keys become ready; and which tickets get them, in order.
    #[test]
    fn who_gets_the_next_key() {
        type Row<'a> = (
            &'a str,
            &'a [(u64, u8)],
            &'a [(u8, u64, f64)],
            usize,
            &'a [u64],
        );
        let rows: &[Row<'_>] = &[
            (
                "first come, first served",
                &[(1, 2), (2, 3)],
                &[],
                3,
                &[1, 2],
            ),
            (
                "a prefix never served goes before one served",
                &[(1, 2), (2, 2), (3, 9)],
                &[(2, 5, 0.0)],
                3,
                &[3, 1],
            ),
            (
                "the prefix served longest ago goes first",
                &[(1, 2), (2, 3), (3, 4)],
                &[(2, 7, 0.0), (3, 5, 0.0), (4, 6, 0.0)],
                4,
                &[2, 3, 1],
            ),
            (
                "a prefix that completed a handshake lately goes before one never seen",
                &[(1, 2), (2, 3)],
                &[(3, 9, -1.0)],
                1,
                &[2],
            ),
            (
                "a prefix that wastes keys waits behind one that does not",
                &[(1, 2), (2, 3)],
                &[(2, 1, 3.0), (3, 9, 0.0)],
                3,
                &[2],
            ),
            (
                "less than half a key wasted counts as none",
                &[(1, 2), (2, 3)],
                &[(2, 1, 0.4), (3, 9, 0.0)],
                3,
                &[1, 2],
            ),
            (
                "the last two keys are kept from prefixes that waste keys",
                &[(1, 2), (2, 3)],
                &[(2, 1, 3.0), (3, 2, 1.0)],
                2,
                &[],
            ),
            (
                "beyond those, they take turns, the least indebted first",
                &[(1, 2), (2, 3)],
                &[(2, 1, 3.0), (3, 2, 1.0)],
                4,
                &[2, 1],
            ),
            (
                "the last key only to a prefix that completed a handshake lately",
                &[(1, 2)],
                &[],
                1,
                &[],
            ),
            (
                "the one before it to a prefix that wasted none",
                &[(1, 2)],
                &[],
                2,
                &[1],
            ),
            (
                "flooding prefixes take turns, each grant adding to its debt",
                &[(1, 2), (2, 2), (3, 2), (4, 3), (5, 4)],
                &[],
                6,
                &[1, 4, 5, 2],
            ),
            (
                "within a prefix, in arrival order",
                &[(7, 2), (3, 2), (5, 2)],
                &[(2, 1, 0.0)],
                5,
                &[7, 3, 5],
            ),
            ("no waiters: keys stay ready", &[], &[(2, 1, 5.0)], 2, &[]),
        ];
        let now = Instant::now();
        for (what, waiting, accounts, keys, expected) in rows {
            let mut state = State::new(4, Duration::ZERO);
            state.waiting = waiting
                .iter()
                .map(|&(ticket, p)| Waiter {
                    ticket,
                    prefix: prefix(p),
                })
                .collect();
            for &(p, serial, debt) in *accounts {
                let account = Account {
                    last_served: serial,
                    debt,
                    at: Some(now),
                };
                state.accounts.insert(prefix(p), account);
                state.grants = state.grants.max(serial);
            }
            for _ in 0..*keys {
                state.ready.push(crate::crypto::test_keys::transient());
                state.dispatch(now);
            }
            let got: Vec<u64> = state.granted.iter().map(|(t, _, _)| *t).collect();
            assert_eq!(&got, expected, "{what}");
            assert_eq!(
                state.ready.len(),
                keys - expected.len(),
                "{what}: keys left"
            );
        }
    }

    /// The flood: eight prefixes keep eight hellos each waiting and
    /// never complete a handshake; a peer from a ninth that completes its
    /// handshakes finds a key ready every time it asks, however often.
    #[test]
    fn a_peer_that_completes_its_handshakes_finds_a_key_ready() {
        let mut state = State::new(4, Duration::ZERO);
        let t0 = Instant::now();
        let mut ticket = 0;
        let mut join = |state: &mut State, p: u8| {
            ticket += 1;
            state.waiting.push(Waiter {
                ticket,
                prefix: prefix(p),
            });
            ticket
        };
        for p in 2..=9 {
            for _ in 0..8 {
                join(&mut state, p);
            }
        }
        let mut flood_keys = 0;
        // One key made every 333 ms for a minute. Once each flooding prefix
        // has wasted a key (8 keys; before that nobody can be told from the
        // flood), the peer asks every 2 s.
        for n in 0..180u64 {
            let now = t0 + Duration::from_millis(n * 333);
            if n >= 8 && n % 6 == 0 {
                let peer = join(&mut state, 1);
                state.dispatch(now);
                let granted = state.granted.iter().position(|(t, _, _)| *t == peer);
                let (_, p, _) = state
                    .granted
                    .swap_remove(granted.unwrap_or_else(|| panic!("key {n}: the peer waits")));
                state.completed(p, now);
            }
            state.ready.push(crate::crypto::test_keys::transient());
            state.dispatch(now);
            for (_, p, _) in std::mem::take(&mut state.granted) {
                assert_ne!(p, prefix(1));
                flood_keys += 1;
                // The flood asks again for what it got.
                let Prefix::V4([_, _, _, last]) = p else {
                    unreachable!()
                };
                join(&mut state, last);
            }
        }
        // The flood had the rest, but for the keys kept back.
        assert!(state.ready.len() <= 2);
        assert_eq!(flood_keys + 28 + state.ready.len(), 180);
    }

    #[test]
    fn a_small_pool_keeps_nothing_back() {
        assert!(may_take(5, 1, 2));
        assert!(!may_take(5, 1, 4) && !may_take(0, 1, 4) && may_take(-1, 1, 4));
        assert!(!may_take(5, 2, 4) && may_take(0, 2, 4));
        assert!(may_take(5, 3, 4));
        assert!(!may_take(-1, 0, 4));
    }

    #[test]
    fn debts_decay() {
        let t0 = Instant::now();
        let mut account = Account::default();
        account.add_debt(4.0, t0);
        assert!((account.debt(t0 + DEBT_HALF_LIFE) - 2.0).abs() < 1e-9);
        account.add_debt(-10.0, t0);
        assert_eq!(account.debt(t0), -1.0, "owed one key at most");
    }

    #[test]
    fn forgotten_prefixes_are_bounded() {
        let mut state = State::new(4, Duration::ZERO);
        let now = Instant::now();
        for n in 0..3000u32 {
            state.waiting.push(Waiter {
                ticket: u64::from(n),
                prefix: Prefix::V6([0x20, 0x01, 0, 0, 0, 0, (n >> 8) as u8, n as u8]),
            });
            state.ready.push(crate::crypto::test_keys::transient());
            state.dispatch(now);
            state.granted.clear();
            assert!(state.accounts.len() <= REMEMBERED);
        }
    }

    #[test]
    fn the_pacer_spaces_starts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut pacer = Pacer::new(ms(300), 2);
        assert_eq!(pacer.earliest(t0), t0, "an idle pool starts at once...");
        pacer.started(t0);
        assert_eq!(pacer.earliest(t0), t0, "...on both generators");
        pacer.started(t0);
        assert_eq!(pacer.earliest(t0), t0 + ms(300), "then one per interval");
        pacer.started(t0 + ms(300));
        assert_eq!(pacer.earliest(t0 + ms(400)), t0 + ms(600));
        let late = t0 + secs(10);
        assert_eq!(pacer.earliest(late), late);
        pacer.started(late);
        pacer.started(late);
        assert!(
            pacer.earliest(late) > late,
            "no more than the burst piles up"
        );
        let mut unpaced = Pacer::new(Duration::ZERO, 2);
        for _ in 0..10 {
            assert_eq!(unpaced.earliest(t0), t0);
            unpaced.started(t0);
        }
    }

    #[test]
    fn the_rate_bounds_how_many_keys_are_made() {
        let mut state = State::new(READY, Duration::from_millis(250));
        // A flood: someone always waits, so keys are always wanted; count
        // the starts the pacer allows in ten seconds of 10 ms ticks.
        let t0 = Instant::now();
        let mut starts = 0;
        for tick in 0..1000u32 {
            let now = t0 + Duration::from_millis(u64::from(tick) * 10);
            assert!(state.wants_key());
            while state.pacer.earliest(now) <= now {
                state.pacer.started(now);
                starts += 1;
            }
        }
        assert_eq!(starts, 2 + 39, "a burst of two, then one every 250 ms");
    }

    /// Ten seconds of a flood from eight prefixes that never complete a
    /// handshake, keys made instantly whenever allowed: the flood gets a
    /// key a second once it has wasted some; a peer that comes every 2 s
    /// and completes its handshakes gets its key at once, each time, and
    /// the key it took is replaced at the full rate.
    #[test]
    fn keys_for_prefixes_that_waste_them_come_slowly() {
        let mut state = State::new(READY, Duration::from_millis(333));
        let t0 = Instant::now();
        let mut ticket = 0;
        let mut join = |state: &mut State, p: u8| {
            ticket += 1;
            state.waiting.push(Waiter {
                ticket,
                prefix: prefix(p),
            });
            ticket
        };
        for p in 2..=9 {
            join(&mut state, p);
        }
        // The peer has talked to this server before.
        let mut peer_account = Account::default();
        peer_account.add_debt(-1.0, t0);
        state.accounts.insert(prefix(1), peer_account);
        let (mut made, mut to_flood, mut to_peer) = (0, 0, 0);
        for tick in 0..1000u64 {
            let now = t0 + Duration::from_millis(tick * 10);
            if tick % 200 == 100 {
                let peer = join(&mut state, 1);
                state.dispatch(now);
                let (_, p, _) = state
                    .granted
                    .iter()
                    .position(|(t, _, _)| *t == peer)
                    .map(|i| state.granted.swap_remove(i))
                    .unwrap_or_else(|| panic!("tick {tick}: the peer waits"));
                state.completed(p, now);
                to_peer += 1;
            }
            while state.next_start(now).is_some_and(|at| at <= now) {
                state.start(now);
                state.in_progress -= 1;
                state.ready.push(crate::crypto::test_keys::transient());
                made += 1;
                state.dispatch(now);
            }
            for (_, p, _) in std::mem::take(&mut state.granted) {
                to_flood += 1;
                let Prefix::V4([_, _, _, last]) = p else {
                    unreachable!()
                };
                join(&mut state, last);
            }
        }
        assert_eq!(to_peer, 5);
        // Eight for the flood while it could not be told from anyone else,
        // then about one a second, and the peer's five replaced.
        assert!((8..=20).contains(&to_flood), "{to_flood} keys to the flood");
        assert!(made <= to_flood + to_peer + KEPT_BACK, "{made} keys made");
        assert!(made < 30, "{made} keys made in 10 s, not 3 a second");
    }

    #[test]
    fn a_wait_ends_at_its_deadline_or_when_cancelled() {
        // One key at once, then none for an hour.
        let pool = Arc::new(TransientPool::start_with(1, secs(3600)));
        let far = Instant::now() + secs(60);
        let no = AtomicBool::new(false);
        assert!(pool.take(1, prefix(2), far, &no).is_some());
        let started = Instant::now();
        let soon = started + Duration::from_millis(200);
        assert!(pool.take(2, prefix(2), soon, &no).is_none());
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Cancelled while waiting.
        let flag = Arc::new(AtomicBool::new(false));
        let waiting = {
            let (pool, flag) = (Arc::clone(&pool), Arc::clone(&flag));
            thread::spawn(move || pool.take(3, prefix(3), far, &flag))
        };
        while !pool.shared.state().is_waiting(3) {
            assert!(Instant::now() < far, "the waiter never queued");
            thread::sleep(Duration::from_millis(5));
        }
        flag.store(true, Ordering::SeqCst);
        pool.cancel(3);
        assert!(waiting.join().unwrap().is_none());
        // Cancelled before it queued: no wait at all.
        assert!(pool.take(4, prefix(3), far, &flag).is_none());
        assert!(Instant::now() < far);
    }

    #[test]
    fn a_key_given_back_serves_the_next_in_line() {
        let pool = Arc::new(TransientPool::start_with(1, secs(3600)));
        let far = Instant::now() + secs(60);
        let no = AtomicBool::new(false);
        let key = pool.take(1, prefix(2), far, &no).unwrap();
        let public = key.public().clone();
        let waiting = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || pool.take(2, prefix(3), far, &AtomicBool::new(false)))
        };
        while !pool.shared.state().is_waiting(2) {
            assert!(Instant::now() < far, "the waiter never queued");
            thread::sleep(Duration::from_millis(5));
        }
        pool.give_back(key, prefix(2));
        assert_eq!(*waiting.join().unwrap().unwrap().public(), public);
    }
}
