//! What one transient key costs: CPU time of N 2048-bit RSA key generations
//! on this thread (not wall time, so other load on the machine matters
//! less). Used by `bench/serve_load.py keys`.
//!
//! usage: transient_cost [N]

use chat::crypto::PrivateKey;

fn thread_cpu() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(50, |n| n.parse().expect("N"));
    let mut rng = rand::rng();
    let mut costs: Vec<f64> = (0..n)
        .map(|_| {
            let start = thread_cpu();
            PrivateKey::generate(&mut rng, 2048).expect("2048 bits");
            thread_cpu() - start
        })
        .collect();
    costs.sort_by(f64::total_cmp);
    let mean = costs.iter().sum::<f64>() / n as f64;
    println!(
        "{n} transient keys: CPU per key median {:.0} ms, mean {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        costs[n / 2] * 1e3,
        mean * 1e3,
        costs[n * 9 / 10] * 1e3,
        costs[n - 1] * 1e3
    );
}
