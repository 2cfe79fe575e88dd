//! A circuit: the bytes of two paired connections copied both ways, without
//! a look at them.
//!
//! Each direction reads at most [`BUFFER`] bytes and writes all of them
//! before it reads again, so the relay holds at most one buffer per
//! direction and a slow reader slows its sender through TCP flow control
//! (backpressure). A direction that has nothing to read gives its buffer
//! back, so an idle circuit holds none. When one side shuts down its
//! sending half, the relay forwards the FIN (shuts down its own sending
//! half toward the other side) and keeps copying the other way; the
//! circuit ends when both directions have ended, when either side fails
//! (then both connections close at once), or when no byte has moved either
//! way for the idle timeout.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes read (and then written) at a time, per direction.
pub const BUFFER: usize = 128 * 1024;

/// Buffers kept for reuse per thread, so that busy circuits do not go back
/// to the allocator for every burst while idle ones hold nothing.
const POOL: usize = 16;

thread_local! {
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer, returned to this thread's spares when dropped.
struct Buffer(Option<Box<[u8]>>);

impl Buffer {
    fn take() -> Self {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        Self(Some(
            spare.unwrap_or_else(|| vec![0u8; BUFFER].into_boxed_slice()),
        ))
    }

    fn bytes(&mut self) -> &mut [u8] {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.0.take() {
            SPARE.with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < POOL {
                    spare.push(buffer);
                }
            });
        }
    }
}

/// How a circuit ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    /// Both sides shut down their sending halves.
    Closed,
    /// One side reset or failed.
    Failed,
    /// Nothing moved for the idle timeout.
    Idle,
}

/// The last time a byte was read, in milliseconds after `start`.
struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn deadline(&self, idle: Duration) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle
    }
}

/// Copies between `a` and `b` until the circuit ends; adds every byte read
/// to `bytes`.
pub async fn run(a: &TcpStream, b: &TcpStream, idle: Duration, bytes: &AtomicU64) -> End {
    let activity = Activity {
        start: Instant::now(),
        last: AtomicU64::new(0),
    };
    let forward = pump(a, b, &activity, bytes);
    let backward = pump(b, a, &activity, bytes);
    tokio::pin!(forward, backward);
    let (mut forward_done, mut backward_done) = (false, false);
    while !(forward_done && backward_done) {
        let deadline = activity.deadline(idle);
        tokio::select! {
            result = &mut forward, if !forward_done => match result {
                Ok(()) => forward_done = true,
                Err(_) => return End::Failed,
            },
            result = &mut backward, if !backward_done => match result {
                Ok(()) => backward_done = true,
                Err(_) => return End::Failed,
            },
            () = tokio::time::sleep_until(deadline) => {
                if activity.deadline(idle) <= Instant::now() {
                    return End::Idle;
                }
            }
        }
    }
    End::Closed
}

/// One direction: `from` to `to`, until `from` shuts down (then shuts down
/// `to`'s sending half) or either fails.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    activity: &Activity,
    bytes: &AtomicU64,
) -> io::Result<()> {
    let mut buffer: Option<Buffer> = None;
    loop {
        from.readable().await?;
        let read = {
            let buf = buffer.get_or_insert_with(Buffer::take);
            from.try_read(buf.bytes())
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read: give the buffer back while waiting.
                buffer = None;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        activity.touch();
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let buf = buffer.as_mut().expect("just read into it").bytes();
        let mut written = 0;
        while written < n {
            to.writable().await?;
            match to.try_write(&buf[written..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => written += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
    drop(buffer);
    // Forward the FIN. The other side may already be gone; that ends the
    // circuit through the other direction.
    let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
    Ok(())
}
