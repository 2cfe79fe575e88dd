//! The conversations `chat serve` holds: up to a maximum, one per peer key.
//!
//! Every connection whose handshake completes claims a [`Slot`] here before
//! it reaches the program; the slot is freed when the program drops it.
//!
//! * **One per key, newest wins.** A session authenticated by a key that
//!   already holds a slot takes that slot over, and the old conversation is
//!   closed with [`CloseReason::Superseded`] (reconnecting after a network
//!   blip just works, as with DERP's and iroh's relays).
//! * **Verified before unverified.** When every slot is taken, a peer whose
//!   key the program has verified displaces the unverified conversation
//!   that has been idle the longest, which is closed with
//!   [`CloseReason::Displaced`]; anyone else is refused as busy. Idle means
//!   no message in either direction: keep-alives and receipts are not
//!   activity (see [`Activity`] and [`Tracked`]).
//!
//! Closing is done by whoever holds the conversation: the program registers
//! how with [`Slot::on_evict`]. Until it does, an evicted connection is
//! simply cut.

use std::io;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conversation::{Handler, KeyUpdates, Summary};
use crate::crypto::Fingerprint;
use crate::protocol::CloseReason;

/// Conversations a server holds at once unless told otherwise.
pub const DEFAULT_MAX: usize = 8;

/// When a conversation last carried a message, in either direction.
/// Cheap to clone; all clones share one clock.
#[derive(Clone)]
pub struct Activity {
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last activity.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Self {
            epoch,
            last: Arc::new(AtomicU64::new(0)),
        };
        activity.touch();
        activity
    }

    /// Records activity now: a message sent or received (not a keep-alive).
    pub fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn idle(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(self.last()))
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

/// A conversation [`Handler`] that records received messages as activity,
/// and passes everything on.
pub struct Tracked<H> {
    inner: H,
    activity: Activity,
}

impl<H> Tracked<H> {
    /// Wraps `inner`, recording on `activity`.
    pub fn new(inner: H, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<H: Handler> Handler for Tracked<H> {
    fn message_start(&mut self, id: u64, length: u64) -> io::Result<()> {
        self.activity.touch();
        self.inner.message_start(id, length)
    }
    fn message_data(&mut self, id: u64, data: &[u8]) -> io::Result<()> {
        self.activity.touch();
        self.inner.message_data(id, data)
    }
    fn message_end(&mut self, id: u64) -> io::Result<()> {
        self.activity.touch();
        self.inner.message_end(id)
    }
    fn delivered(&mut self, ids: RangeInclusive<u64>) {
        self.inner.delivered(ids);
    }
    fn peer_done(&mut self) {
        self.inner.peer_done();
    }
    fn ended(&mut self, summary: &Summary) {
        self.inner.ended(summary);
    }
    fn key_updates(&self) -> Option<KeyUpdates> {
        self.inner.key_updates()
    }
    // Files go to the wrapped handler; their data counts as activity.
    fn file_offered(
        &mut self,
        id: u64,
        manifest: &crate::transfer::Manifest,
    ) -> super::conversation::Consent {
        self.activity.touch();
        self.inner.file_offered(id, manifest)
    }
    fn file_open(
        &mut self,
        id: u64,
        entry: u16,
        path: &[String],
        size: u64,
        offset: u64,
    ) -> io::Result<()> {
        self.inner.file_open(id, entry, path, size, offset)
    }
    fn file_write(&mut self, id: u64, entry: u16, data: &[u8]) -> io::Result<()> {
        self.activity.touch();
        self.inner.file_write(id, entry, data)
    }
    fn file_save(&mut self, id: u64, entry: u16) -> crate::transfer::SaveOutcome {
        self.inner.file_save(id, entry)
    }
    fn file_discard(&mut self, id: u64, entry: u16, keep: bool) {
        self.inner.file_discard(id, entry, keep)
    }
    fn file_notice(&mut self, notice: super::conversation::FileNotice<'_>) {
        self.inner.file_notice(notice)
    }
}

/// How to close a conversation that must give way.
type Closer = Box<dyn FnOnce(CloseReason) + Send>;

#[derive(Default)]
struct Eviction {
    closer: Option<Closer>,
    reason: Option<CloseReason>,
}

struct Entry {
    id: u64,
    fingerprint: Fingerprint,
    verified: Arc<AtomicBool>,
    activity: Activity,
    eviction: Arc<Mutex<Eviction>>,
}

struct Table {
    max: usize,
    next_id: u64,
    entries: Vec<Entry>,
}

struct Shared {
    table: Mutex<Table>,
    /// Signalled when a slot is freed.
    freed: Condvar,
    epoch: Instant,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a newcomer's claim comes to.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Take over the slot at this index (same key).
    Supersede(usize),
    /// Take a free slot.
    Take,
    /// Take the slot at this index from an unverified conversation.
    Displace(usize),
    /// No slot for this newcomer.
    Full,
}

/// A held slot as the rules see it: its key, whether it is verified, and
/// its last activity (larger is more recent).
type View = (Fingerprint, bool, u64);

/// The rules of the module's documentation, on a snapshot of the table.
fn decide(held: &[View], max: usize, fingerprint: &Fingerprint, verified: bool) -> Decision {
    if let Some(index) = held.iter().position(|(f, _, _)| f == fingerprint) {
        return Decision::Supersede(index);
    }
    if held.len() < max {
        return Decision::Take;
    }
    if !verified {
        return Decision::Full;
    }
    held.iter()
        .enumerate()
        .filter(|(_, (_, verified, _))| !verified)
        .min_by_key(|(index, (_, _, last))| (*last, *index))
        .map_or(Decision::Full, |(index, _)| Decision::Displace(index))
}

/// A conversation that gave way to a newcomer, for the newcomer's notice.
#[derive(Debug, Clone)]
pub struct Evicted {
    /// The slot id it had.
    pub id: u64,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Why it was closed.
    pub reason: CloseReason,
    /// How long it had been idle.
    pub idle: Duration,
}

/// Every slot was taken, and the newcomer could displace none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The conversation table (cheap to clone; clones share it).
#[derive(Clone)]
pub struct Slots {
    shared: Arc<Shared>,
}

/// What [`Slots::list`] shows of one slot.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    /// Its id.
    pub id: u64,
    /// The peer's key.
    pub fingerprint: Fingerprint,
    /// Whether the program has verified it.
    pub verified: bool,
    /// How long since a message went either way.
    pub idle: Duration,
}

impl Slots {
    /// A table of `max` slots (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Table {
                    max: max.max(1),
                    next_id: 1,
                    entries: Vec::new(),
                }),
                freed: Condvar::new(),
                epoch: Instant::now(),
            }),
        }
    }

    /// The most slots.
    pub fn max(&self) -> usize {
        self.shared.table().max
    }

    /// The slots held now.
    pub fn list(&self) -> Vec<SlotInfo> {
        self.shared
            .table()
            .entries
            .iter()
            .map(|e| SlotInfo {
                id: e.id,
                fingerprint: e.fingerprint,
                verified: e.verified.load(Ordering::SeqCst),
                idle: e.activity.idle(),
            })
            .collect()
    }

    /// Claims a slot for a newly authenticated peer with key `fingerprint`
    /// (`verified` if the program already trusts that key), closing the
    /// conversation it takes the place of, if any. `closer` closes this
    /// connection should it have to give way before the program registers
    /// its own ([`Slot::on_evict`]). If every slot is taken and none can be
    /// displaced, waits up to `grace` for one to be freed (a conversation
    /// that is just ending), then gives up.
    pub fn claim(
        &self,
        fingerprint: Fingerprint,
        verified: bool,
        closer: Closer,
        grace: Duration,
    ) -> Result<(Slot, Option<Evicted>), Full> {
        let deadline = Instant::now() + grace;
        let mut table = self.shared.table();
        loop {
            let held: Vec<View> = table
                .entries
                .iter()
                .map(|e| {
                    (
                        e.fingerprint,
                        e.verified.load(Ordering::SeqCst),
                        e.activity.last(),
                    )
                })
                .collect();
            let (victim, reason) = match decide(&held, table.max, &fingerprint, verified) {
                Decision::Take => (None, None),
                Decision::Supersede(index) => (Some(index), Some(CloseReason::Superseded)),
                Decision::Displace(index) => (Some(index), Some(CloseReason::Displaced)),
                Decision::Full => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Full);
                    }
                    table = self
                        .shared
                        .freed
                        .wait_timeout(table, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
            };
            let victim = victim.map(|index| table.entries.remove(index));
            let id = table.next_id;
            table.next_id += 1;
            let activity = Activity::new(self.shared.epoch);
            let eviction = Arc::new(Mutex::new(Eviction {
                closer: Some(closer),
                reason: None,
            }));
            let verified = Arc::new(AtomicBool::new(verified));
            table.entries.push(Entry {
                id,
                fingerprint,
                verified: Arc::clone(&verified),
                activity: activity.clone(),
                eviction: Arc::clone(&eviction),
            });
            drop(table);
            let evicted = victim.zip(reason).map(|(entry, reason)| {
                let idle = entry.activity.idle();
                evict(&entry.eviction, reason);
                Evicted {
                    id: entry.id,
                    fingerprint: entry.fingerprint,
                    reason,
                    idle,
                }
            });
            let slot = Slot {
                shared: Arc::clone(&self.shared),
                id,
                verified,
                activity,
                eviction,
            };
            return Ok((slot, evicted));
        }
    }
}

/// Closes an evicted conversation with `reason`, now if it has a closer,
/// or as soon as one is registered.
fn evict(eviction: &Mutex<Eviction>, reason: CloseReason) {
    let closer = {
        let mut eviction = eviction.lock().unwrap_or_else(|p| p.into_inner());
        eviction.reason = Some(reason);
        eviction.closer.take()
    };
    if let Some(closer) = closer {
        closer(reason);
    }
}

/// One held conversation slot; freed when dropped.
pub struct Slot {
    shared: Arc<Shared>,
    id: u64,
    verified: Arc<AtomicBool>,
    activity: Activity,
    eviction: Arc<Mutex<Eviction>>,
}

impl Slot {
    /// The slot's id: unique for the server's lifetime, so it can name the
    /// conversation (in `--json` events, for instance).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The conversation's activity clock: give it to the conversation
    /// engine ([`Tracked`] for what arrives) and touch it for what is sent.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Records the program's trust decision: a verified conversation is
    /// never displaced.
    pub fn set_verified(&self, verified: bool) {
        self.verified.store(verified, Ordering::SeqCst);
    }

    /// How to close this conversation if it must give way (superseded or
    /// displaced); replaces the default, which cuts the connection. If it
    /// already had to give way, `closer` runs at once.
    pub fn on_evict(&self, closer: impl FnOnce(CloseReason) + Send + 'static) {
        let mut eviction = self.eviction.lock().unwrap_or_else(|p| p.into_inner());
        match eviction.reason {
            Some(reason) => {
                drop(eviction);
                closer(reason);
            }
            None => eviction.closer = Some(Box::new(closer)),
        }
    }

    /// Why this conversation had to give way, if it did.
    pub fn evicted(&self) -> Option<CloseReason> {
        self.eviction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reason
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.shared.table();
        table.entries.retain(|e| e.id != self.id);
        self.shared.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn key(n: u8) -> Fingerprint {
        Fingerprint::of_spki_der(&[n])
    }

    /// One row: the held slots (key, verified, last activity), the cap,
    /// the newcomer (key, verified), and the decision.
    #[test]
    fn who_gets_a_slot() {
        type Row<'a> = (&'a str, &'a [(u8, bool, u64)], usize, (u8, bool), Decision);
        let rows: &[Row<'_>] = &[
            (
                "room: take a free slot",
                &[(1, false, 5)],
                2,
                (2, false),
                Decision::Take,
            ),
            (
                "same key: supersede, even with room",
                &[(1, true, 5), (2, false, 3)],
                8,
                (2, false),
                Decision::Supersede(1),
            ),
            (
                "same key: supersede, even when full",
                &[(1, true, 5), (2, true, 3)],
                2,
                (1, false),
                Decision::Supersede(0),
            ),
            (
                "full, unverified newcomer: refused",
                &[(1, false, 5), (2, false, 3)],
                2,
                (3, false),
                Decision::Full,
            ),
            (
                "full, verified newcomer: the longest-idle unverified goes",
                &[(1, false, 5), (2, true, 1), (3, false, 3), (4, false, 9)],
                4,
                (5, true),
                Decision::Displace(2),
            ),
            (
                "full of verified conversations: even a verified newcomer is refused",
                &[(1, true, 5), (2, true, 3)],
                2,
                (3, true),
                Decision::Full,
            ),
            (
                "equally idle: the one that came first goes",
                &[(1, false, 3), (2, false, 3)],
                2,
                (3, true),
                Decision::Displace(0),
            ),
        ];
        for (what, held, max, (newcomer, verified), expected) in rows {
            let held: Vec<View> = held.iter().map(|&(k, v, last)| (key(k), v, last)).collect();
            assert_eq!(
                decide(&held, *max, &key(*newcomer), *verified),
                *expected,
                "{what}"
            );
        }
    }

    fn closer(reasons: &mpsc::Sender<(u8, CloseReason)>, who: u8) -> Closer {
        let reasons = reasons.clone();
        Box::new(move |reason| reasons.send((who, reason)).unwrap())
    }

    #[test]
    fn superseded_displaced_and_freed() {
        let slots = Slots::new(2);
        let (reasons, closed) = mpsc::channel();
        let grace = Duration::ZERO;
        let (a, _) = slots
            .claim(key(1), false, closer(&reasons, 1), grace)
            .unwrap();
        let (b, _) = slots
            .claim(key(2), false, closer(&reasons, 2), grace)
            .unwrap();
        assert_ne!(a.id(), b.id());
        // B talks; A only keeps the connection alive, which is not activity.
        std::thread::sleep(Duration::from_millis(5));
        b.activity().touch();
        // A stranger is refused; a verified peer displaces A.
        assert!(
            slots
                .claim(key(3), false, closer(&reasons, 3), grace)
                .is_err()
        );
        let (c, evicted) = slots
            .claim(key(4), true, closer(&reasons, 4), grace)
            .unwrap();
        let evicted = evicted.unwrap();
        assert_eq!(
            (evicted.id, evicted.reason),
            (a.id(), CloseReason::Displaced)
        );
        assert_eq!(closed.try_recv().unwrap(), (1, CloseReason::Displaced));
        assert_eq!(a.evicted(), Some(CloseReason::Displaced));
        // B comes back with the same key: B's old conversation is superseded,
        // and closed the way its program registered.
        let (to_b, from_b) = mpsc::channel();
        b.on_evict(move |reason| to_b.send(reason).unwrap());
        let (b2, evicted) = slots
            .claim(key(2), false, closer(&reasons, 5), grace)
            .unwrap();
        assert_eq!(evicted.unwrap().reason, CloseReason::Superseded);
        assert_eq!(from_b.try_recv().unwrap(), CloseReason::Superseded);
        assert!(
            closed.try_recv().is_err(),
            "the default closer was replaced"
        );
        // Dropping the old slots frees nothing (they were taken over)...
        drop(a);
        drop(b);
        assert_eq!(slots.list().len(), 2);
        // ...dropping a held one does.
        drop(c);
        assert_eq!(slots.list().len(), 1);
        assert_eq!(slots.list()[0].id, b2.id());
        // A closer registered after the fact runs at once.
        let (to_a, from_a) = mpsc::channel();
        let a_again = slots.claim(key(8), false, closer(&reasons, 8), grace);
        assert!(a_again.is_ok(), "a slot is free again");
        let (a_again, _) = a_again.unwrap();
        let (_f, evicted) = slots
            .claim(key(9), true, closer(&reasons, 9), grace)
            .unwrap();
        // b2 has been idle longer than a_again: b2 gives way.
        assert_eq!(evicted.unwrap().id, b2.id());
        assert_eq!(closed.try_recv().unwrap(), (5, CloseReason::Displaced));
        b2.on_evict(move |reason| to_a.send(reason).unwrap());
        assert_eq!(from_a.try_recv().unwrap(), CloseReason::Displaced);
        assert_eq!(a_again.evicted(), None);
    }

    #[test]
    fn a_verified_slot_is_never_displaced() {
        let slots = Slots::new(1);
        let (reasons, _closed) = mpsc::channel();
        let (a, _) = slots
            .claim(key(1), false, closer(&reasons, 1), Duration::ZERO)
            .unwrap();
        a.set_verified(true);
        assert!(
            slots
                .claim(key(2), true, closer(&reasons, 2), Duration::ZERO)
                .is_err()
        );
        assert!(slots.list()[0].verified);
    }

    #[test]
    fn a_claim_waits_out_the_grace_for_a_slot_to_free() {
        let slots = Slots::new(1);
        let (reasons, _closed) = mpsc::channel();
        let (a, _) = slots
            .claim(key(1), false, closer(&reasons, 1), Duration::ZERO)
            .unwrap();
        let freeing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
        });
        let claimed = slots.claim(key(2), false, closer(&reasons, 2), Duration::from_secs(30));
        assert!(claimed.is_ok());
        freeing.join().unwrap();
    }

    #[test]
    fn activity_counts_messages_only() {
        struct Nothing;
        impl Handler for Nothing {
            fn message_data(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
            fn message_end(&mut self, _: u64) -> io::Result<()> {
                Ok(())
            }
        }
        let activity = Activity::new(Instant::now());
        let before = activity.last();
        let mut tracked = Tracked::new(Nothing, activity.clone());
        std::thread::sleep(Duration::from_millis(2));
        tracked.delivered(1..=1);
        tracked.peer_done();
        assert_eq!(
            activity.last(),
            before,
            "receipts and DONE are not activity"
        );
        tracked.message_start(1, 3).unwrap();
        assert!(activity.last() > before);
        let after_start = activity.last();
        std::thread::sleep(Duration::from_millis(2));
        tracked.message_end(1).unwrap();
        assert!(activity.last() > after_start);
    }
}
