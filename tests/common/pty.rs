//! `chat` on a pseudo-terminal of 80x24, with everything it prints rendered
//! by a terminal emulator (`vt100`): tests assert on the rows a person
//! would see, scrollback included, not on raw bytes.

use std::io::{ErrorKind, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::Session;
use expectrl::session::OsSession;

use super::TestHome;

/// The terminal's size.
pub const COLUMNS: u16 = 80;
pub const ROWS: u16 = 24;

/// How long a test waits for something to appear.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A program on a pseudo-terminal and the screen it has drawn.
pub struct Pty {
    session: OsSession,
    parser: vt100::Parser,
    /// Every byte the program wrote.
    pub raw: Vec<u8>,
}

impl Pty {
    /// `chat --home HOME ARGS...` on an 80x24 terminal, keeping 2,000 rows
    /// of scrollback.
    pub fn chat(home: &TestHome, args: &[&str]) -> Self {
        Self::chat_with_scrollback(home, args, 2000)
    }

    /// As [`Pty::chat`], with `scrollback` rows kept.
    pub fn chat_with_scrollback(home: &TestHome, args: &[&str], scrollback: usize) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .arg("--home")
            .arg(home.path())
            .args(args)
            .env_remove("CHAT_HOME")
            .env("TERM", "xterm-256color");
        Self::spawn(command, scrollback)
    }

    /// Runs `command` on a new 80x24 terminal.
    pub fn spawn(command: Command, scrollback: usize) -> Self {
        let session = Session::spawn(command).expect("spawn on a pty");
        assert_eq!(
            session.get_process().get_window_size().unwrap(),
            (COLUMNS, ROWS)
        );
        Self {
            session,
            parser: vt100::Parser::new(
                ROWS.try_into().unwrap(),
                COLUMNS.try_into().unwrap(),
                scrollback,
            ),
            raw: Vec::new(),
        }
    }

    /// Reads whatever the program has written; true if there was anything.
    pub fn pump(&mut self) -> bool {
        let mut got = false;
        let mut buf = [0u8; 65536];
        loop {
            match self.session.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.parser.process(&buf[..n]);
                    self.raw.extend_from_slice(&buf[..n]);
                    got = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // EIO once the program has exited and closed the terminal.
                Err(_) => break,
            }
        }
        got
    }

    /// Waits (reading all the while) until `check` returns something.
    #[track_caller]
    pub fn wait_until<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&mut Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.pump();
            if let Some(found) = check(self) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {what} within {PATIENCE:?}; the screen:\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `needle` is in [`Pty::text`].
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str) {
        self.wait_until(&format!("{needle:?}"), |pty| {
            pty.text().contains(needle).then_some(())
        });
    }

    /// The rows now visible, without trailing blanks.
    pub fn screen(&self) -> Vec<String> {
        self.parser
            .screen()
            .rows(0, COLUMNS)
            .map(|row| row.trim_end().to_string())
            .collect()
    }

    /// Every row printed so far, scrollback first, without trailing blanks;
    /// the blank rows below the last one are left out.
    pub fn history(&mut self) -> Vec<String> {
        let rows = usize::from(ROWS);
        let screen = self.parser.screen_mut();
        screen.set_scrollback(usize::MAX);
        let total = screen.scrollback();
        let mut out = Vec::new();
        let mut start = 0;
        while start < total + rows {
            let offset = total.saturating_sub(start);
            screen.set_scrollback(offset);
            let first = total - offset;
            for (i, row) in screen.rows(0, COLUMNS).enumerate() {
                if first + i >= start {
                    out.push(row.trim_end().to_string());
                }
            }
            start = first + rows;
        }
        screen.set_scrollback(0);
        while out.last().is_some_and(String::is_empty) {
            out.pop();
        }
        out
    }

    /// Whether the terminal wrapped any visible row itself (chat should
    /// never leave that to the terminal).
    pub fn soft_wrapped_rows(&self) -> Vec<String> {
        let screen = self.parser.screen();
        (0..ROWS)
            .filter(|&row| screen.row_wrapped(row))
            .map(|row| self.screen()[usize::from(row)].clone())
            .collect()
    }

    /// The history as one text, rows joined by newlines; a row that
    /// continues a wrapped notice (it starts with two spaces) is joined to
    /// the one before with a space, so phrases can be found whole.
    pub fn text(&mut self) -> String {
        self.history().join("\n").replace("\n  ", " ")
    }

    /// The row the cursor is in: the prompt and the line being typed.
    pub fn cursor_row(&self) -> String {
        let (row, _) = self.parser.screen().cursor_position();
        self.screen()[usize::from(row)].clone()
    }

    /// The row just above the cursor's (where the REPL draws its status
    /// rows), or "" if the cursor is in the top row.
    pub fn row_above_cursor(&self) -> String {
        let (row, _) = self.parser.screen().cursor_position();
        match usize::from(row).checked_sub(1) {
            Some(above) => self.screen()[above].clone(),
            None => String::new(),
        }
    }

    /// The screen, for failure messages.
    pub fn dump(&mut self) -> String {
        let history = self.history();
        let from = history.len().saturating_sub(60);
        history[from..]
            .iter()
            .map(|row| format!("|{row}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends bytes as if typed or pasted, all at once.
    pub fn send(&mut self, bytes: &[u8]) {
        let deadline = Instant::now() + PATIENCE;
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.session.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    assert!(
                        Instant::now() < deadline,
                        "the program stopped reading its input"
                    );
                    self.pump();
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("writing to the terminal: {e}"),
            }
        }
        self.session.flush().unwrap();
    }

    /// Types `text` and presses Enter.
    pub fn line(&mut self, text: &str) {
        self.send(format!("{text}\r").as_bytes());
    }

    /// Waits for the program to exit; returns its exit code.
    #[track_caller]
    pub fn exit_code(&mut self) -> i32 {
        use expectrl::process::unix::WaitStatus;
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.pump();
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => panic!("chat did not exit: {other:?}; the screen:\n{}", self.dump()),
            }
        }
    }

    /// Whether the program is still running.
    pub fn is_running(&self) -> bool {
        use expectrl::process::unix::WaitStatus;
        matches!(
            self.session.get_process().status(),
            Ok(WaitStatus::StillAlive)
        )
    }

    /// The port of a `chat serve --listen 127.0.0.1:0`, from its first line.
    pub fn port(&mut self) -> u16 {
        self.wait_until("the listening port", |pty| {
            let history = pty.history();
            // The next row has begun: the port is complete.
            let at = history
                .iter()
                .position(|row| row.starts_with("listening on "))?;
            history.get(at + 1)?;
            history[at]
                .strip_prefix("listening on 127.0.0.1:")
                .and_then(|port| port.parse().ok())
        })
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self
            .session
            .get_process_mut()
            .kill(expectrl::process::unix::Signal::SIGKILL);
    }
}
