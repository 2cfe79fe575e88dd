//! Transient keys made ahead of time: background threads keep a few fresh
//! 2048-bit keys ready so that a connecting peer never waits for key
//! generation. Each key is handed out once and lives only in memory.
//!
//! Generating a key takes a core for a tenth of a second or more, so it must
//! not slow down the work the keys are for:
//!
//! * while a conversation runs (and could use both cores for a transfer)
//!   the generators rest, as long as at least one key is ready: a server in
//!   a conversation refuses newcomers without spending a key, and the keys
//!   left over serve the next peers when it ends;
//! * one generator, at normal priority, keeps [`URGENT`] keys ready; the
//!   others top the pool up at the lowest priority (nice 19), yielding to
//!   handshakes. A low-priority generator alone starved on a busy machine,
//!   and handshakes then waited seconds for a key.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use crate::crypto::PrivateKey;
use crate::protocol::TRANSIENT_BITS;

/// Keys the normal-priority generator keeps ready.
pub const URGENT: usize = 2;

/// A supply of fresh transient keys.
pub struct TransientPool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a key is added or taken, or resting starts or ends.
    changed: Condvar,
}

struct State {
    ready: Vec<PrivateKey>,
    /// Keys being generated right now, and how many of them by the
    /// normal-priority generator.
    in_progress: usize,
    urgent_in_progress: usize,
    /// How many keys to keep ready (counting those in progress).
    target: usize,
    resting: bool,
    /// The pool is gone; the generators stop.
    closed: bool,
}

impl State {
    /// Whether a generator should start another key. The normal-priority
    /// (`urgent`) one counts only its own keys in progress, so that a
    /// starved low-priority generator never holds it back.
    fn wants_key(&self, urgent: bool) -> bool {
        let ready = self.ready.len();
        match (self.resting, urgent) {
            // Resting: one key if there would be none at all.
            (true, true) => ready + self.urgent_in_progress == 0,
            (true, false) => false,
            (false, true) => ready + self.urgent_in_progress < URGENT.min(self.target),
            (false, false) => ready + self.in_progress < self.target,
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TransientPool {
    /// Starts one generator per core (at most four); together they keep
    /// `ready` keys waiting, so that a burst of connections finds keys
    /// ready and a steady stream is served by every core. The first
    /// generator runs at normal priority, the others at the lowest.
    pub fn start(ready: usize) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready: Vec::with_capacity(ready),
                in_progress: 0,
                urgent_in_progress: 0,
                target: ready.max(1),
                resting: false,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let generators = thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for n in 0..generators.max(2) {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("transient-keys".into())
                .spawn(move || generate(&shared, n == 0))
                .expect("spawn a key generator");
        }
        Self { shared }
    }

    /// A fresh key, waiting for one if none is ready yet.
    pub fn take(&self) -> PrivateKey {
        let mut state = self.shared.state();
        let key = loop {
            if let Some(key) = state.ready.pop() {
                break key;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        };
        self.shared.changed.notify_all();
        key
    }

    /// Stops making keys (while at least one is ready) until
    /// [`resume`](Self::resume).
    pub fn rest(&self) {
        self.shared.state().resting = true;
    }

    /// Makes keys again, up to the number asked for.
    pub fn resume(&self) {
        self.shared.state().resting = false;
        self.shared.changed.notify_all();
    }
}

impl Drop for TransientPool {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.changed.notify_all();
    }
}

fn generate(shared: &Shared, urgent: bool) {
    if !urgent {
        lower_priority();
    }
    let mut rng = rand::rng();
    loop {
        {
            let mut state = shared.state();
            while !state.wants_key(urgent) && !state.closed {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.closed {
                return;
            }
            state.in_progress += 1;
            state.urgent_in_progress += usize::from(urgent);
        }
        let key =
            PrivateKey::generate(&mut rng, TRANSIENT_BITS).expect("2048 bits is a valid size");
        let mut state = shared.state();
        state.in_progress -= 1;
        state.urgent_in_progress -= usize::from(urgent);
        state.ready.push(key);
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

    #[test]
    fn keys_are_fresh_and_2048_bits() {
        let pool = TransientPool::start(2);
        let a = pool.take();
        let b = pool.take();
        assert_eq!(a.public().bits(), 2048);
        assert_ne!(a.public(), b.public());
    }

    /// A pool state with `ready` keys and keys in progress (`urgent` of
    /// them by the normal-priority generator), aiming at four.
    fn state(ready: usize, in_progress: usize, urgent: usize, resting: bool) -> State {
        State {
            ready: (0..ready)
                .map(|_| crate::crypto::test_keys::transient())
                .collect(),
            in_progress,
            urgent_in_progress: urgent,
            target: 4,
            resting,
            closed: false,
        }
    }

    #[test]
    fn who_makes_a_key_when() {
        let (urgent, background) = (true, false);
        // The normal-priority generator keeps two keys ready and no more.
        assert!(state(0, 0, 0, false).wants_key(urgent));
        assert!(state(1, 0, 0, false).wants_key(urgent));
        assert!(!state(1, 1, 1, false).wants_key(urgent));
        assert!(!state(2, 0, 0, false).wants_key(urgent));
        // A starved background key does not hold the urgent one back.
        assert!(state(1, 1, 0, false).wants_key(urgent));
        // The low-priority ones top up to the target, counting keys in
        // progress.
        assert!(state(2, 0, 0, false).wants_key(background));
        assert!(!state(3, 1, 0, false).wants_key(background));
        assert!(!state(4, 0, 0, false).wants_key(background));
        // Resting: only the normal-priority generator, and only when no key
        // is ready or coming from it.
        assert!(!state(1, 0, 0, true).wants_key(urgent));
        assert!(!state(0, 1, 1, true).wants_key(urgent));
        assert!(state(0, 1, 0, true).wants_key(urgent));
        assert!(state(0, 0, 0, true).wants_key(urgent));
        assert!(!state(0, 0, 0, true).wants_key(background));
    }

    #[test]
    fn a_resting_pool_still_hands_out_keys() {
        let pool = TransientPool::start(2);
        pool.rest();
        // More keys than were ready: resting makes one whenever none is.
        for _ in 0..3 {
            assert_eq!(pool.take().public().bits(), 2048);
        }
        pool.resume();
        drop(pool.take());
    }
}
