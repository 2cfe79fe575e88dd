//! Full handshakes per second against a running `chat serve`, from honest
//! peers: THREADS threads each connect, complete the handshake with the
//! identity key in KEY_FILE (which the server must accept), say goodbye at
//! once, and start again, for SECONDS seconds. Used by
//! `bench/serve_load.py rate`.
//!
//! usage: handshake_rate HOST:PORT SECONDS THREADS KEY_FILE

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chat::crypto::PrivateKey;
use chat::net::Decision;
use chat::protocol::CloseReason;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, address, seconds, threads, key_file] = &args[..] else {
        eprintln!("usage: handshake_rate HOST:PORT SECONDS THREADS KEY_FILE");
        std::process::exit(2);
    };
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let threads: usize = threads.parse().expect("THREADS");
    let pem = std::fs::read_to_string(key_file).expect("KEY_FILE");
    let key = Arc::new(
        PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { Err(()) })
            .expect("an unencrypted key")
            .expect("a valid key"),
    );
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (key, done, failed, address) = (
                Arc::clone(&key),
                Arc::clone(&done),
                Arc::clone(&failed),
                address.clone(),
            );
            thread::spawn(move || {
                let mut rng = rand::rng();
                while Instant::now() < until {
                    let Ok(stream) = TcpStream::connect(&address) else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    match chat::net::initiate(stream, &mut rng, &key, "bench", |_| {
                        Decision::Continue
                    }) {
                        Ok(Some(connected)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            connected.close(CloseReason::Goodbye);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = done.load(Ordering::Relaxed);
    println!(
        "{done} handshakes in {elapsed:.1} s with {threads} threads: {:.1} per second ({} refused or failed)",
        done as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
}
