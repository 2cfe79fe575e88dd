//! The terminal itself: raw mode, reading keys without losing any, waking
//! the reading thread from others, the window's width, and drawing rows
//! above the one-row prompt.
//!
//! One thread reads the keyboard ([`Keyboard`]); any thread may print
//! through the [`Screen`] (kept behind the REPL's lock), which clears the
//! prompt row, writes the rows, and draws the prompt and the half-typed line
//! again below them.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};

use super::keys::{Decoder, Key};
use super::line::Line;
use super::screen;

/// How long a lone ESC waits for the rest of a sequence.
const ESCAPE_WAIT: Duration = Duration::from_millis(50);
/// How long a bracketed paste may pause before it is taken as ended.
const PASTE_WAIT: Duration = Duration::from_secs(2);

const STDIN: i32 = 0;
const STDOUT: i32 = 1;

/// The terminal in raw mode (no echo, no line editing, no signals from
/// keys, output processing kept), with bracketed paste on; restored when
/// dropped.
pub struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    /// Puts standard input's terminal in raw mode.
    pub fn enter() -> io::Result<Self> {
        // SAFETY: tcgetattr fills the struct it is given; zeroed is a valid
        // initial value for this plain C struct.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(STDIN, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_iflag &= !(libc::BRKINT
            | libc::ICRNL
            | libc::INLCR
            | libc::IGNCR
            | libc::INPCK
            | libc::ISTRIP
            | libc::IXON);
        raw.c_cflag |= libc::CS8;
        raw.c_lflag &= !(libc::ECHO | libc::ICANON | libc::IEXTEN | libc::ISIG);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // TCSANOW keeps what was typed before: it is read as keys.
        // SAFETY: a valid termios for a file descriptor we do not own but
        // only configure.
        if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        write_out(b"\x1b[?2004h")?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = write_out(b"\x1b[?2004l");
        // SAFETY: restores the settings read in `enter`.
        unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &self.saved) };
    }
}

fn write_out(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// The terminal's width in columns (80 if it cannot be read).
pub fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; zeroed is a valid initial value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(STDOUT, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

/// Wakes the thread waiting in [`Keyboard::next`].
#[derive(Clone)]
pub struct Waker(Arc<UnixStream>);

impl Waker {
    /// Wakes the keyboard's thread (once; more wakes before it looks are one).
    pub fn wake(&self) {
        // Full means a wake-up is already pending.
        let _ = (&*self.0).write(&[1]);
    }
}

/// What [`Keyboard::next`] saw.
#[derive(Debug)]
pub enum Event {
    /// A key.
    Key(Key),
    /// Another thread called [`Waker::wake`].
    Woken,
    /// The window changed size.
    Resized,
    /// SIGTERM, SIGHUP or SIGINT: leave.
    Stop,
    /// The deadline passed.
    Timeout,
    /// The terminal is gone (end of input).
    Closed,
}

/// Flags the signal handlers set.
#[derive(Default)]
struct Signals {
    resized: AtomicBool,
    stop: Arc<AtomicBool>,
    /// The keyboard is gone: signals take their default action again.
    released: Arc<AtomicBool>,
}

/// A signal action that stays registered until the process ends.
fn registered_for_life(_id: SigId) {}

/// Reads keys from standard input.
pub struct Keyboard {
    decoder: Decoder,
    keys: VecDeque<Key>,
    wake: UnixStream,
    signals: Arc<Signals>,
    registered: Vec<SigId>,
    closed: bool,
}

impl Keyboard {
    /// A keyboard and the waker for other threads. Catches SIGWINCH, and
    /// SIGTERM, SIGHUP and SIGINT to leave cleanly (a second one ends the
    /// process at once).
    pub fn new() -> io::Result<(Self, Waker)> {
        let (wake, waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        waker.set_nonblocking(true)?;
        let signals = Arc::new(Signals::default());
        let mut registered = Vec::new();
        let resized = Arc::clone(&signals);
        // SAFETY: the action only stores to an atomic, which is
        // async-signal-safe.
        registered.push(unsafe {
            signal_hook::low_level::register(SIGWINCH, move || {
                resized.resized.store(true, Ordering::SeqCst);
            })
        }?);
        registered.push(signal_hook::low_level::pipe::register(
            SIGWINCH,
            waker.try_clone()?,
        )?);
        for signal in [SIGTERM, SIGHUP, SIGINT] {
            // Once the keyboard is dropped, the signal does what it did
            // before (ends the process).
            registered_for_life(signal_hook::flag::register_conditional_default(
                signal,
                Arc::clone(&signals.released),
            )?);
            registered.push(signal_hook::flag::register_conditional_shutdown(
                signal,
                1,
                Arc::clone(&signals.stop),
            )?);
            registered.push(signal_hook::flag::register(
                signal,
                Arc::clone(&signals.stop),
            )?);
            registered.push(signal_hook::low_level::pipe::register(
                signal,
                waker.try_clone()?,
            )?);
        }
        Ok((
            Self {
                decoder: Decoder::default(),
                keys: VecDeque::new(),
                wake,
                signals,
                registered,
                closed: false,
            },
            Waker(Arc::new(waker)),
        ))
    }

    /// The next thing that happened, waiting until `deadline` at most.
    pub fn next(&mut self, deadline: Option<Instant>) -> io::Result<Event> {
        loop {
            if self.signals.stop.load(Ordering::SeqCst) {
                return Ok(Event::Stop);
            }
            if self.signals.resized.swap(false, Ordering::SeqCst) {
                return Ok(Event::Resized);
            }
            if let Some(key) = self.keys.pop_front() {
                return Ok(Event::Key(key));
            }
            let mut wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let pending = self.decoder.is_pending();
            if pending {
                let limit = if self.decoder.in_paste() {
                    PASTE_WAIT
                } else {
                    ESCAPE_WAIT
                };
                wait = Some(wait.map_or(limit, |w| w.min(limit)));
            }
            let timeout_ms = wait.map_or(-1, |w| {
                i32::try_from(w.as_millis().max(u128::from(!w.is_zero()))).unwrap_or(i32::MAX)
            });
            let mut fds = [
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if self.closed { -1 } else { STDIN },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfd structs.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
            if ready < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if ready == 0 {
                if pending {
                    let mut keys = Vec::new();
                    self.decoder.flush(&mut keys);
                    self.keys.extend(keys);
                    if deadline.is_none_or(|d| Instant::now() < d) {
                        continue;
                    }
                }
                return Ok(Event::Timeout);
            }
            if fds[0].revents != 0 {
                let mut drain = [0u8; 64];
                while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
                return Ok(Event::Woken);
            }
            if fds[1].revents != 0 {
                let mut buf = [0u8; 4096];
                // SAFETY: standard input stays open for the life of the process.
                let stdin = unsafe { BorrowedFd::borrow_raw(STDIN) };
                let n = match read_fd(stdin, &mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // EIO: the terminal hung up.
                    Err(_) => 0,
                };
                if n == 0 {
                    self.closed = true;
                    return Ok(Event::Closed);
                }
                let mut keys = Vec::new();
                self.decoder.feed(&buf[..n], &mut keys);
                self.keys.extend(keys);
            }
        }
    }
}

/// One read(2) from a file descriptor.
fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Drop for Keyboard {
    fn drop(&mut self) {
        self.signals.released.store(true, Ordering::SeqCst);
        for id in self.registered.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// What is on the terminal: the rows printed so far scroll up, then come
/// the status rows (files on their way, see [`super::transfers`]), and the
/// last row is the prompt with the line being typed.
pub struct Screen {
    prompt: String,
    /// The line being typed.
    pub line: Line,
    /// Whether the prompt row is drawn (false before the REPL starts
    /// reading and after it stops: rows are then printed plainly).
    active: bool,
    /// The status rows, each fitting the terminal, no control characters.
    status: Vec<String>,
    /// How many status rows are on the terminal, just above the prompt.
    drawn: usize,
}

impl Screen {
    /// A screen whose prompt is not drawn yet.
    pub fn new(prompt: String) -> Self {
        Self {
            prompt,
            line: Line::default(),
            active: false,
            status: Vec::new(),
            drawn: 0,
        }
    }

    /// The terminal's width.
    pub fn width(&self) -> usize {
        width()
    }

    /// Starts (or stops) drawing the prompt row and the status rows.
    pub fn set_active(&mut self, active: bool) -> io::Result<()> {
        if self.active == active {
            return Ok(());
        }
        if active {
            self.active = true;
            self.draw_below(String::new())
        } else {
            let mut out = String::new();
            self.clear_below(&mut out);
            self.active = false;
            write_out(out.as_bytes())
        }
    }

    /// The prompt now shown.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Changes the prompt (drawing it again if it changed).
    pub fn set_prompt(&mut self, prompt: String) -> io::Result<()> {
        if prompt == self.prompt {
            return Ok(());
        }
        self.prompt = prompt;
        self.redraw()
    }

    /// Changes the status rows (drawing them again if they changed). Each
    /// row must already fit the terminal and hold no control characters.
    pub fn set_status(&mut self, rows: Vec<String>) -> io::Result<()> {
        if rows == self.status {
            return Ok(());
        }
        self.status = rows;
        if !self.active {
            return Ok(());
        }
        let mut out = String::new();
        self.clear_below(&mut out);
        self.draw_below(out)
    }

    fn prompt_row(&self, out: &mut String) {
        let (row, column) = self.line.render(&self.prompt, screen::budget(self.width()));
        out.push('\r');
        out.push_str(&row);
        out.push_str("\x1b[K\r");
        if column > 0 {
            out.push_str(&format!("\x1b[{column}C"));
        }
    }

    /// Moves from the prompt row to the first status row drawn, and clears
    /// from there to the end of the screen.
    fn clear_below(&mut self, out: &mut String) {
        if !self.active {
            return;
        }
        out.push('\r');
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        out.push_str("\x1b[J");
        self.drawn = 0;
    }

    /// Appends the status rows and the prompt row to `out` (where the
    /// cursor is at the start of an empty row), and writes it all.
    fn draw_below(&mut self, mut out: String) -> io::Result<()> {
        if self.active {
            for row in &self.status {
                out.push_str(row);
                out.push_str("\r\n");
            }
            self.drawn = self.status.len();
            self.prompt_row(&mut out);
        }
        write_out(out.as_bytes())
    }

    /// Draws the prompt row again.
    pub fn redraw(&mut self) -> io::Result<()> {
        if !self.active {
            return Ok(());
        }
        let mut out = String::new();
        self.prompt_row(&mut out);
        write_out(out.as_bytes())
    }

    /// Prints `rows` above the status rows and the prompt, which are drawn
    /// again below them. Each row must already fit the terminal and hold no
    /// control characters (see [`screen`]).
    pub fn print(&mut self, rows: &[String]) -> io::Result<()> {
        let mut out = String::new();
        self.clear_below(&mut out);
        for row in rows {
            out.push_str(row);
            out.push_str("\r\n");
        }
        self.draw_below(out)
    }
}
