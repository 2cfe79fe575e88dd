//! A partial file being written, with the disk kept busy as it grows:
//! every [`WRITEBACK`] bytes it asks the kernel to start writing them out,
//! so that the fsync before a file's rename (a saved file is on disk,
//! docs/PROTOCOL.md 9.7) waits for the last few MiB instead of the whole
//! file. On this machine's disk a 1 GiB fsync went from about 2 s to 6 ms.
//!
//! The writes stay on the reader thread: a thread of their own was tried
//! and measured (docs/PERFORMANCE.md "Files"): it cost the receiver about
//! 0.3 s more CPU per GiB (each record's bytes travel to another core) for
//! no shorter transfer on two cores.

use std::fs::File;
use std::io::{self, Seek, Write};

/// Bytes written between two requests to start writing back to disk.
const WRITEBACK: u64 = 8 << 20;

/// A file being written, its bytes sent towards the disk as they come.
pub struct Writer {
    file: File,
    /// Where the bytes not yet sent towards the disk start.
    from: u64,
    /// How many there are.
    unflushed: u64,
}

impl Writer {
    /// Starts writing to `file` (at its current position).
    pub fn new(mut file: File) -> io::Result<Self> {
        let from = file.stream_position()?;
        Ok(Self {
            file,
            from,
            unflushed: 0,
        })
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.unflushed += data.len() as u64;
        if self.unflushed >= WRITEBACK {
            start_writeback(&self.file, self.from, self.unflushed);
            self.from += self.unflushed;
            self.unflushed = 0;
        }
        Ok(())
    }

    /// The file, everything written (not yet flushed: the caller syncs).
    pub fn finish(self) -> File {
        self.file
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, SeekFrom};

    #[test]
    fn everything_written_in_order_past_several_writebacks() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"kept prefix").unwrap();
        let mut writer = Writer::new(file).unwrap();
        let mut expected = b"kept prefix".to_vec();
        let chunk: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i * 7) as u8).collect();
        for _ in 0..7 {
            writer.write(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        assert_eq!(writer.from, 11 + 18 * (1 << 20), "two writebacks started");
        let mut file = writer.finish();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert!(back == expected, "the file differs");
    }

    #[test]
    fn a_failed_write_is_an_error() {
        // A file opened read-only: every write fails.
        let path = tempfile::NamedTempFile::new().unwrap();
        let file = File::open(path.path()).unwrap();
        let mut writer = Writer::new(file).unwrap();
        let error = writer.write(b"data").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
    }
}
