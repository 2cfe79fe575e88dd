//! A partial file being written, straight to the disk where the file
//! system allows it.
//!
//! A saved file must be on disk before its rename (docs/PROTOCOL.md 9.7),
//! so going through the page cache buys nothing, and it costs: every byte is
//! copied into a freshly allocated page cache page, and on this project's
//! virtual machines that copy was 72 % of the receiver's time (each new page
//! is a first touch of guest memory; docs/PERFORMANCE.md "Files"). So on
//! Linux, on a local file system (ext4, XFS, Btrfs, F2FS, tmpfs; never a
//! network or FUSE one), the file is written with `O_DIRECT`: the bytes are
//! gathered in aligned buffers of [`CHUNK`] bytes and handed to the disk
//! from there.
//!
//! * A resume starts anywhere: the buffer then starts at the block holding
//!   the resume offset, with the kept bytes of that block read back into
//!   it, so every direct write is whole aligned blocks.
//! * The tail (less than a block) goes through the page cache, with
//!   `O_DIRECT` turned off, and the caller's fsync writes it.
//! * A file system that refuses `O_DIRECT`, when it is asked for or at a
//!   write (EINVAL from most; some FUSE servers answer EIO), gets the page
//!   cache instead: the refused bytes are written again through it, and so
//!   is everything after, with writeback started every [`WRITEBACK`] bytes
//!   so that the final fsync waits only for the last few MiB (on this disk
//!   a 1 GiB fsync went from about 2 s to 6 ms). Only when that write fails
//!   too is it an error.
//! * At most [`DIRECT_FILES`] files at once are written directly; the
//!   others go through the page cache, so that many peers sending at once
//!   cannot make us hold more than 16 MiB of buffers.
//! * After an error nothing more is written, and the file is cut back to
//!   the bytes known written, so that a partial kept for a resume is always
//!   a prefix of the file, without a hole.
//!
//! The reader thread copies each record's bytes into the buffer; a full
//! buffer goes to a thread of its own that only hands it to the disk (which
//! reads it by DMA) while the reader fills a second one, so the disk's time
//! overlaps the reader's work. That thread never touches the bytes: a
//! writer thread that did (through the page cache) was tried and undone,
//! because each record's bytes then travelled to another core, at about
//! 0.3 s more CPU per GiB.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

/// The alignment of direct writes, in memory and in the file: a page, which
/// is a multiple of every common disk block.
const ALIGN: usize = 4096;

/// The bytes gathered before one direct write (a multiple of [`ALIGN`]).
/// Two such buffers exist while a file arrives.
const CHUNK: usize = 1 << 20;

/// Bytes written through the page cache between two requests to start
/// writing them back to disk.
const WRITEBACK: u64 = 8 << 20;

/// A file being written, its bytes sent towards the disk as they come.
pub struct Writer {
    file: File,
    /// Where in the file the bytes not yet handed over start: in direct
    /// mode, the offset of the buffer being filled (aligned).
    at: u64,
    /// Direct mode. `None`: through the page cache.
    direct: Option<Direct>,
    /// Through the page cache: bytes written since writeback was last
    /// started (they end at `at`).
    unflushed: u64,
    /// Every byte before this offset is written.
    written: u64,
    /// The first error: after it nothing more is written.
    failed: Option<io::Error>,
    /// A write at this offset writes half its bytes and fails (tests only).
    #[cfg(test)]
    fail_at: Option<u64>,
    /// Every direct write is refused, as by a file system without them
    /// (tests only).
    #[cfg(test)]
    refuse_direct: bool,
}

struct Direct {
    /// The buffer being filled.
    filling: Staged,
    /// The thread that writes full buffers, from the first one on.
    disk: Option<Disk>,
    /// Its place among the files written directly (given back last, once
    /// the thread is done).
    _place: Place,
}

/// Files written directly at once in this process, at most: each holds two
/// buffers and a thread, so that `chat serve` receiving from many peers
/// holds at most 16 MiB of them; the files beyond go through the page
/// cache.
const DIRECT_FILES: usize = 8;

/// How many files are written directly now.
static DIRECT_NOW: AtomicUsize = AtomicUsize::new(0);

/// One of the [`DIRECT_FILES`] places, given back when dropped.
struct Place(&'static AtomicUsize);

impl Place {
    /// A place, if fewer than `most` of `count`'s are taken.
    fn take(count: &'static AtomicUsize, most: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(count))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes waiting for a direct write.
struct Staged {
    /// `ALIGN` bytes more than [`CHUNK`], so that an aligned window fits.
    memory: Vec<u8>,
    /// Where the aligned window starts in `memory`.
    start: usize,
    /// How many bytes of the window are filled.
    len: usize,
}

impl Staged {
    /// A buffer holding `kept` to begin with.
    fn new(kept: &[u8]) -> Self {
        let mut memory = vec![0; CHUNK + ALIGN];
        // The distance to the next multiple of ALIGN (at most ALIGN - 1).
        let start = (ALIGN - memory.as_ptr() as usize % ALIGN) % ALIGN;
        memory[start..start + kept.len()].copy_from_slice(kept);
        Self {
            memory,
            start,
            len: kept.len(),
        }
    }

    fn filled(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.len]
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(CHUNK - self.len);
        let at = self.start + self.len;
        self.memory[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Forgets the first `n` bytes.
    fn consume(&mut self, n: usize) {
        let (start, end) = (self.start, self.start + self.len);
        self.memory.copy_within(start + n..end, start);
        self.len -= n;
    }
}

/// A full buffer, where it goes, and (on its way back) how its write went.
struct Job {
    staged: Staged,
    at: u64,
    /// A fault to play (tests only; always `Fault::None` otherwise).
    fault: Fault,
    result: io::Result<()>,
}

/// The thread that hands full buffers to the disk, one at a time.
struct Disk {
    /// `None` once dropped, so that the thread ends.
    to_disk: Option<SyncSender<Job>>,
    back: Receiver<Job>,
    /// Whether a buffer is out.
    busy: bool,
    thread: Option<thread::JoinHandle<()>>,
}

impl Disk {
    fn start(file: File) -> io::Result<Self> {
        let (to_disk, jobs) = mpsc::sync_channel::<Job>(1);
        let (done, back) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name("chat-disk".into())
            .spawn(move || {
                for mut job in jobs {
                    job.result = write_at(&file, job.staged.filled(), job.at, job.fault);
                    if done.send(job).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            to_disk: Some(to_disk),
            back,
            busy: false,
            thread: Some(thread),
        })
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let to_disk = self.to_disk.as_ref().ok_or_else(stopped)?;
        to_disk.send(job).map_err(|_| stopped())?;
        self.busy = true;
        Ok(())
    }

    /// The buffer that is out, once written.
    fn wait(&mut self) -> io::Result<Option<Job>> {
        if !std::mem::replace(&mut self.busy, false) {
            return Ok(None);
        }
        self.back.recv().map(Some).map_err(|_| stopped())
    }
}

impl Drop for Disk {
    /// Waits for the buffer that is out (one write at most), so that no
    /// write lands after the file was given up.
    fn drop(&mut self) {
        self.to_disk = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the thread writing the file stopped")
}

/// A fault the tests play at a write.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
enum Fault {
    None,
    /// Refused (EINVAL), nothing written: a file system without direct
    /// writes.
    Refuse,
    /// Half the bytes written, then EIO: a disk that fails mid-write.
    Break,
}

/// Writes `bytes` at `at`, or plays `fault`.
fn write_at(file: &File, bytes: &[u8], at: u64, fault: Fault) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    match fault {
        Fault::None => file.write_all_at(bytes, at),
        Fault::Refuse => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        Fault::Break => {
            let _ = file.write_all_at(&bytes[..bytes.len() / 2], at);
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
    }
}

impl Writer {
    /// Starts writing to `file` at its current position, straight to the
    /// disk if its file system allows it.
    pub fn new(file: File) -> io::Result<Self> {
        Self::limited(file, &DIRECT_NOW, DIRECT_FILES)
    }

    /// [`Writer::new`], straight to the disk only if fewer than `most` of
    /// `count`'s places are taken.
    fn limited(file: File, count: &'static AtomicUsize, most: usize) -> io::Result<Self> {
        let mut writer = Self::buffered(file)?;
        let Some(place) = Place::take(count, most).filter(|_| on_local_disk(&writer.file)) else {
            return Ok(writer);
        };
        let block = writer.at - writer.at % ALIGN as u64;
        // The kept bytes of the block where writing resumes, read while the
        // page cache is still in use.
        let mut kept = [0; ALIGN];
        let kept = &mut kept[..(writer.at - block) as usize];
        writer.file.read_exact_at(kept, block)?;
        if set_direct(&writer.file, true) {
            writer.at = block;
            writer.direct = Some(Direct {
                filling: Staged::new(kept),
                disk: None,
                _place: place,
            });
        }
        Ok(writer)
    }

    /// Starts writing to `file` at its current position, through the page
    /// cache.
    pub fn buffered(mut file: File) -> io::Result<Self> {
        let at = file.stream_position()?;
        Ok(Self {
            file,
            at,
            direct: None,
            unflushed: 0,
            written: at,
            failed: None,
            #[cfg(test)]
            fail_at: None,
            #[cfg(test)]
            refuse_direct: false,
        })
    }

    /// Whether the bytes go straight to the disk.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The fault the tests play at a write at `at` (`direct` or through
    /// the page cache).
    #[cfg(test)]
    fn fault(&self, at: u64, direct: bool) -> Fault {
        if direct && self.refuse_direct {
            Fault::Refuse
        } else if self.fail_at == Some(at) {
            Fault::Break
        } else {
            Fault::None
        }
    }

    #[cfg(not(test))]
    fn fault(&self, _: u64, _: bool) -> Fault {
        Fault::None
    }

    /// Appends `data`. After an error, every call fails.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(again(e));
        }
        let result = self.append(data);
        self.note(result)
    }

    /// Keeps the first error.
    fn note(&mut self, result: io::Result<()>) -> io::Result<()> {
        if let Err(e) = &result {
            self.failed.get_or_insert(again(e));
        }
        result
    }

    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while let Some(direct) = &mut self.direct {
            if data.is_empty() {
                return Ok(());
            }
            data = &data[direct.filling.fill(data)..];
            if direct.filling.len == CHUNK {
                self.hand_over()?;
            }
        }
        self.write_through_cache(data)
    }

    /// Gives the full buffer to the disk thread and goes on with the other.
    fn hand_over(&mut self) -> io::Result<()> {
        let spare = self.collect()?;
        let fault = self.fault(self.at, true);
        let Some(direct) = &mut self.direct else {
            return Ok(()); // Refused: all written through the page cache.
        };
        let disk = match &mut direct.disk {
            Some(disk) => disk,
            None => match self.file.try_clone().and_then(Disk::start) {
                Ok(disk) => direct.disk.insert(disk),
                // No thread (out of threads or descriptors): this buffer
                // and the rest through the page cache.
                Err(_) => return self.leave_direct(),
            },
        };
        let empty = spare.unwrap_or_else(|| Staged::new(&[]));
        disk.send(Job {
            staged: std::mem::replace(&mut direct.filling, empty),
            at: self.at,
            fault,
            result: Ok(()),
        })?;
        self.at += CHUNK as u64;
        Ok(())
    }

    /// Waits for the buffer that is out, if any, and returns it emptied. If
    /// its write failed, it is written again through the page cache, and so
    /// are the buffer being filled and everything after.
    fn collect(&mut self) -> io::Result<Option<Staged>> {
        let Some(disk) = self.direct.as_mut().and_then(|d| d.disk.as_mut()) else {
            return Ok(None);
        };
        let Some(mut job) = disk.wait()? else {
            return Ok(None);
        };
        let end = job.at + job.staged.len as u64;
        if job.result.is_err() {
            set_direct(&self.file, false);
            let fault = self.fault(job.at, false);
            write_at(&self.file, job.staged.filled(), job.at, fault)?;
            self.written = end;
            self.leave_direct()?;
            return Ok(None);
        }
        self.written = end;
        job.staged.len = 0;
        Ok(Some(job.staged))
    }

    /// Goes on through the page cache, starting with the bytes of the
    /// buffer being filled.
    fn leave_direct(&mut self) -> io::Result<()> {
        let Some(direct) = self.direct.take() else {
            return Ok(());
        };
        set_direct(&self.file, false);
        self.write_through_cache(direct.filling.filled())
    }

    fn write_through_cache(&mut self, data: &[u8]) -> io::Result<()> {
        write_at(&self.file, data, self.at, self.fault(self.at, false))?;
        self.at += data.len() as u64;
        self.written = self.at;
        self.unflushed += data.len() as u64;
        if self.unflushed >= WRITEBACK {
            start_writeback(&self.file, self.at - self.unflushed, self.unflushed);
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Writes what is staged: the whole blocks directly, the tail through
    /// the page cache.
    fn flush(&mut self) -> io::Result<()> {
        self.collect()?;
        let fault = self.fault(self.at, true);
        let Some(direct) = &mut self.direct else {
            return Ok(());
        };
        let filling = &mut direct.filling;
        let whole = filling.len - filling.len % ALIGN;
        // None when the bytes are less than a block: then `at` may be below
        // the kept bytes of a resume, which are written already.
        if whole > 0 && write_at(&self.file, &filling.filled()[..whole], self.at, fault).is_ok() {
            filling.consume(whole);
            self.at += whole as u64;
            self.written = self.at;
        }
        self.leave_direct()
    }

    /// The file, everything written and positioned at its end (not yet
    /// flushed: the caller syncs). After an error, the file is cut back to
    /// the bytes known written (a prefix, without a hole) and the error
    /// returned.
    pub fn finish(mut self) -> io::Result<File> {
        if self.failed.is_none() {
            let result = self.flush();
            let _ = self.note(result);
        }
        if let Some(e) = self.failed.take() {
            self.direct = None; // Waits for a write still out.
            let _ = self.file.set_len(self.written);
            return Err(e);
        }
        self.file.seek(SeekFrom::Start(self.at))?;
        Ok(self.file)
    }
}

/// The same error again (an `io::Error` cannot be cloned).
fn again(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// Whether `file` is on a local file system whose direct writes are known
/// to work and to be fast: ext2/3/4, XFS, Btrfs, F2FS, tmpfs. Not a network
/// or FUSE file system, where each direct write can be a synchronous round
/// trip to a server (nfs(5)) or refused with any error.
#[cfg(target_os = "linux")]
fn on_local_disk(file: &File) -> bool {
    let Ok(stat) = rustix::fs::fstatfs(file) else {
        return false;
    };
    // The field and the constants have the same type on each target, but
    // not the same on every target.
    #[allow(clippy::unnecessary_cast)]
    let kind = stat.f_type as i64;
    #[allow(clippy::unnecessary_cast)]
    let local = [
        libc::EXT4_SUPER_MAGIC as i64,
        libc::XFS_SUPER_MAGIC as i64,
        libc::BTRFS_SUPER_MAGIC as i64,
        libc::F2FS_SUPER_MAGIC as i64,
        libc::TMPFS_MAGIC as i64,
    ];
    local.contains(&kind)
}

#[cfg(not(target_os = "linux"))]
fn on_local_disk(_: &File) -> bool {
    false
}

/// Turns `O_DIRECT` on or off for `file`; whether that worked.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> bool {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let Ok(flags) = fcntl_getfl(file) else {
        return false;
    };
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file, flags).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_: &File, _: bool) -> bool {
    false
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
    use std::io::{Read, Write};

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    fn read_back(mut file: File) -> Vec<u8> {
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        back
    }

    /// The file's bytes as the disk has them: read with `O_DIRECT`, past
    /// the page cache (which the kernel writes out first where it holds
    /// any of them).
    fn read_back_direct(file: &File) -> Vec<u8> {
        assert!(set_direct(file, true));
        let mut buffer = Staged::new(&[]);
        let mut back = Vec::new();
        loop {
            let window = &mut buffer.memory[buffer.start..buffer.start + CHUNK];
            let n = file.read_at(window, back.len() as u64).unwrap();
            back.extend_from_slice(&window[..n]);
            if n < CHUNK {
                break;
            }
        }
        assert!(set_direct(file, false));
        back
    }

    /// An unnamed file on a local disk file system, where `O_DIRECT` is
    /// expected to work: in the package's folder, where the tests run, or
    /// else in the system's temporary folder. `None` (and the test says it
    /// is skipped) where neither is, as in a container's overlay.
    fn disk_file() -> Option<File> {
        let file = [std::path::PathBuf::from("."), std::env::temp_dir()]
            .iter()
            .map(|folder| tempfile::tempfile_in(folder).unwrap())
            .find(on_local_disk);
        if file.is_none() {
            eprintln!(
                "skipped: no folder on ext4, XFS, Btrfs, F2FS or tmpfs to test direct writes in"
            );
        }
        file
    }

    /// A writer straight to the disk, with `kept` bytes already in its file.
    fn direct_writer(kept: &[u8]) -> Option<Writer> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let mut file = disk_file()?;
        file.write_all(kept).unwrap();
        let writer = Writer::limited(file, &COUNT, usize::MAX).unwrap();
        assert!(writer.is_direct(), "a local file system takes O_DIRECT");
        Some(writer)
    }

    #[test]
    fn everything_arrives_in_order_whatever_the_kept_prefix_and_pieces() {
        // Kept prefixes: none, inside the first block, on a block edge, past
        // one; pieces smaller, larger and not multiples of a block; totals
        // ending on and off a block edge.
        for kept in [0, 11, ALIGN, ALIGN * 3 + 5] {
            for (piece, pieces) in [(1000, 7), (CHUNK + 3, 3), (ALIGN * 64, 40)] {
                let prefix = pattern(kept, 7);
                let Some(mut writer) = direct_writer(&prefix) else {
                    return;
                };
                let mut expected = prefix;
                for n in 0..pieces {
                    let data = pattern(piece, n);
                    writer.write(&data).unwrap();
                    expected.extend_from_slice(&data);
                }
                let mut file = writer.finish().unwrap();
                assert_eq!(file.stream_position().unwrap(), expected.len() as u64);
                let on_disk = read_back_direct(&file);
                assert!(
                    on_disk == expected,
                    "disk differs: kept {kept}, pieces of {piece}"
                );
                let back = read_back(file);
                assert!(back == expected, "differs: kept {kept}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        // Refused on the disk thread (a file of several buffers) and at the
        // end (a file smaller than one buffer), with a resume's kept bytes.
        for len in [CHUNK * 3 + 100, ALIGN * 2 + 100] {
            let Some(mut writer) = direct_writer(b"kept") else {
                return;
            };
            writer.refuse_direct = true;
            let data = pattern(len, 3);
            writer.write(&data).unwrap();
            if len > CHUNK {
                assert!(!writer.is_direct(), "left direct mode when refused");
            }
            let back = read_back(writer.finish().unwrap());
            assert!(
                back[..4] == *b"kept" && back[4..] == data,
                "differs ({len} bytes)"
            );
        }
    }

    /// Writes `data` with `writer`, whose write at `fail_at` breaks; the
    /// error comes from `write` or `finish` (never later), and what is
    /// left in the file is returned.
    fn broken(mut writer: Writer, fail_at: u64, data: &[u8]) -> Vec<u8> {
        writer.fail_at = Some(fail_at);
        let file = writer.file.try_clone().unwrap();
        let result = writer.write(data);
        if result.is_err() {
            let again = writer.write(b"more").unwrap_err();
            assert_eq!(again.raw_os_error(), Some(libc::EIO), "{again}");
        }
        let error = result.and(writer.finish().map(drop)).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
        read_back(file)
    }

    #[test]
    fn after_an_error_the_file_is_cut_back_to_what_was_written() {
        // Each broken write leaves half its bytes behind, past what is
        // known written: the file must end where the good bytes end.
        // The second buffer, on the disk thread and again through the page
        // cache: the third, already filled, must not land after the gap.
        let data = pattern(CHUNK * 3 + 100, 5);
        if let Some(writer) = direct_writer(b"") {
            let left = broken(writer, CHUNK as u64, &data);
            assert!(left == data[..CHUNK], "kept {} bytes", left.len());
        }
        // After the disk thread was refused: the buffer being filled,
        // through the page cache.
        if let Some(mut writer) = direct_writer(b"") {
            writer.refuse_direct = true;
            let left = broken(writer, CHUNK as u64, &data);
            assert!(left == data[..CHUNK], "kept {} bytes", left.len());
        }
        // The tail, after the whole blocks went straight to the disk.
        let data = pattern(CHUNK + ALIGN * 2 + 100, 6);
        if let Some(writer) = direct_writer(b"") {
            let tail = (CHUNK + ALIGN * 2) as u64;
            let left = broken(writer, tail, &data);
            assert!(
                left == data[..CHUNK + ALIGN * 2],
                "kept {} bytes",
                left.len()
            );
        }
        // A resume's first write, less than a block: the kept bytes stay.
        if let Some(writer) = direct_writer(b"eleven kept") {
            let left = broken(writer, 0, &pattern(100, 7));
            assert_eq!(left, b"eleven kept");
        }
        // Through the page cache from the start.
        let mut file = disk_file().unwrap_or_else(|| tempfile::tempfile().unwrap());
        file.write_all(b"kept").unwrap();
        let left = broken(Writer::buffered(file).unwrap(), 4, &pattern(3000, 8));
        assert_eq!(left, b"kept");
    }

    #[test]
    fn a_writer_dropped_unfinished_leaves_no_write_behind() {
        // Two buffers handed over, the second still out when dropped: the
        // drop waits for it, so nothing lands in the file afterwards.
        let Some(writer) = direct_writer(b"") else {
            return;
        };
        let look = writer.file.try_clone().unwrap();
        let mut writer = writer;
        writer.write(&pattern(CHUNK * 2 + 10, 9)).unwrap();
        drop(writer);
        assert_eq!(look.metadata().unwrap().len(), 2 * CHUNK as u64);
    }

    #[test]
    fn only_so_many_files_are_written_directly_at_once() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let Some(file) = disk_file() else {
            return;
        };
        let open = || Writer::limited(file.try_clone().unwrap(), &COUNT, 2).unwrap();
        let (first, second, third) = (open(), open(), open());
        assert!(first.is_direct() && second.is_direct());
        assert!(
            !third.is_direct(),
            "a third writer goes through the page cache"
        );
        drop(first);
        assert!(open().is_direct(), "a place given back is taken again");
        drop((second, third));
        assert_eq!(COUNT.load(Ordering::Acquire), 0, "every place given back");
    }

    #[test]
    fn through_the_page_cache_past_several_writebacks() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"kept prefix").unwrap();
        let mut writer = Writer::buffered(file).unwrap();
        assert!(!writer.is_direct());
        let mut expected = b"kept prefix".to_vec();
        let chunk = pattern(3 << 20, 1);
        for _ in 0..7 {
            writer.write(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        assert_eq!(writer.unflushed, 3 << 20, "two writebacks started");
        let back = read_back(writer.finish().unwrap());
        assert!(back == expected, "the file differs");
    }

    #[test]
    fn a_failed_write_is_an_error() {
        // A file opened read-only: every write fails, direct or not.
        let path = tempfile::NamedTempFile::new_in(".").unwrap();
        for direct in [true, false] {
            let file = File::open(path.path()).unwrap();
            let mut writer = if direct {
                Writer::new(file).unwrap()
            } else {
                Writer::buffered(file).unwrap()
            };
            let result = writer
                .write(&pattern(CHUNK, 0))
                .and_then(|()| writer.finish().map(drop));
            let error = result.unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
        }
    }
}
