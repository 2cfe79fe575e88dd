//! Transient keys made ahead of time: a background thread keeps a few fresh
//! 2048-bit keys ready so that a connecting peer never waits for key
//! generation. Each key is handed out once and lives only in memory.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use crate::crypto::PrivateKey;
use crate::protocol::TRANSIENT_BITS;

/// A supply of fresh transient keys.
pub struct TransientPool {
    keys: Mutex<Receiver<PrivateKey>>,
}

impl TransientPool {
    /// Starts one generator per core (at most four); together they keep
    /// about `ready` keys waiting, so that a burst of connections finds keys
    /// ready and a steady stream is served by every core.
    pub fn start(ready: usize) -> Self {
        let generators = thread::available_parallelism().map_or(1, |n| n.get().min(4));
        // Each generator holds one finished key while the queue is full.
        let (sender, keys) = sync_channel(ready.saturating_sub(generators));
        for _ in 0..generators {
            let sender = sender.clone();
            thread::Builder::new()
                .name("transient-keys".into())
                .spawn(move || generate(sender))
                .expect("spawn a key generator");
        }
        Self {
            keys: Mutex::new(keys),
        }
    }

    /// A fresh key, waiting for one if none is ready yet.
    pub fn take(&self) -> PrivateKey {
        self.keys
            .lock()
            .expect("pool lock")
            .recv()
            .expect("the generator runs as long as the pool")
    }
}

fn generate(sender: SyncSender<PrivateKey>) {
    let mut rng = rand::rng();
    loop {
        let key =
            PrivateKey::generate(&mut rng, TRANSIENT_BITS).expect("2048 bits is a valid size");
        if sender.send(key).is_err() {
            return;
        }
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
}
