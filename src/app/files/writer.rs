//! A partial file written on a thread of its own (`chat-write`), so that
//! copying a received file into the page cache (the receiver's largest
//! cost, `docs/PERFORMANCE.md` "Files") runs beside the decryption and the
//! SHA-256 on the reader thread instead of after them.
//!
//! Every [`WRITEBACK`] bytes it asks the kernel to start writing them to
//! disk, so that the fsync before a file's rename (a saved file is on disk,
//! docs/PROTOCOL.md 9.7) waits for the last few MiB instead of the whole
//! file: the disk works while the data arrives.
//!
//! At most [`DEPTH`] chunks wait between the two threads (a few MiB with
//! 256 KiB records, whatever the file's size), and their buffers are reused.
//! A write that fails is reported by the next [`Writer::write`] or by
//! [`Writer::finish`]; nothing after it is written.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

/// Chunks that may wait for the writing thread.
const DEPTH: usize = 4;

/// Bytes written between two requests to start writing back to disk.
const WRITEBACK: u64 = 8 << 20;

/// A file being written by its own thread.
pub struct Writer {
    chunks: Option<SyncSender<Vec<u8>>>,
    empties: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<File>>>,
}

impl Writer {
    /// Starts writing to `file` (at its current position).
    pub fn new(mut file: File) -> io::Result<Self> {
        let (chunks, full) = sync_channel::<Vec<u8>>(DEPTH);
        let (recycle, empties) = sync_channel::<Vec<u8>>(DEPTH + 1);
        let thread = thread::Builder::new()
            .name("chat-write".into())
            .spawn(move || {
                let mut from = file.stream_position()?;
                let mut unflushed = 0;
                for mut chunk in full {
                    file.write_all(&chunk)?;
                    unflushed += chunk.len() as u64;
                    if unflushed >= WRITEBACK {
                        start_writeback(&file, from, unflushed);
                        from += unflushed;
                        unflushed = 0;
                    }
                    chunk.clear();
                    let _ = recycle.try_send(chunk);
                }
                Ok(file)
            })?;
        Ok(Self {
            chunks: Some(chunks),
            empties,
            thread: Some(thread),
        })
    }

    /// Appends `data` (copied; the call returns before it is written).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut chunk = self.empties.try_recv().unwrap_or_default();
        chunk.extend_from_slice(data);
        let sent = match &self.chunks {
            Some(chunks) => chunks.send(chunk).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: a write failed. Its error says why.
        match self.stop() {
            Err(e) => Err(e),
            Ok(_) => Err(io::Error::other("the file's writer stopped")),
        }
    }

    /// Waits until everything is written and returns the file, or the
    /// first write's error.
    pub fn finish(mut self) -> io::Result<File> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<File> {
        self.chunks = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the file's writer panicked"))),
            None => Err(io::Error::other("the file's writer stopped")),
        }
    }
}

/// Asks the kernel to start writing `len` bytes from `from` to disk, without
/// waiting. Only a head start: the fsync at the end is what counts, so a
/// failure here changes nothing.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain system call on a file descriptor that `file` keeps
    // open; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, SeekFrom};

    #[test]
    fn everything_written_in_order_then_the_file_back() {
        let file = tempfile::tempfile().unwrap();
        let mut writer = Writer::new(file).unwrap();
        let mut expected = Vec::new();
        for i in 0..100u32 {
            let chunk: Vec<u8> = (0..(i * 37 % 5000)).map(|j| (i ^ j) as u8).collect();
            writer.write(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        let mut file = writer.finish().unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, expected);
    }

    #[test]
    fn a_failed_write_is_reported_and_nothing_after_it_is_written() {
        // A file opened read-only: every write fails.
        let path = tempfile::NamedTempFile::new().unwrap();
        let file = File::open(path.path()).unwrap();
        let mut writer = Writer::new(file).unwrap();
        let mut failed = None;
        for _ in 0..(DEPTH + 3) {
            if let Err(e) = writer.write(b"data") {
                failed = Some(e);
                break;
            }
        }
        let error = failed.expect("a write to a read-only file fails within the queue's depth");
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
        assert!(writer.finish().is_err());
        assert_eq!(std::fs::metadata(path.path()).unwrap().len(), 0);
    }
}
