//! What the keyboard sends, as keys: bytes from a terminal in raw mode in,
//! [`Key`]s out. Pure, and nothing is ever dropped: bytes that end in the
//! middle of a character or an escape sequence wait for the next read, so
//! text pasted or typed faster than it is handled arrives whole and in
//! order.
//!
//! A bracketed paste (`ESC [200~ ... ESC [201~`, which the terminal sends
//! when the program has asked for it) becomes one [`Key::Paste`], line
//! breaks and all.

/// One thing the user did at the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A character to insert.
    Char(char),
    /// Text pasted in one piece (bracketed paste), line breaks as `\n`.
    Paste(String),
    /// Enter.
    Enter,
    /// Delete the character before the cursor (Backspace, Ctrl-H).
    Backspace,
    /// Delete the character under the cursor (Delete).
    Delete,
    /// Ctrl-D: quit on an empty line, else delete under the cursor.
    CtrlD,
    /// Ctrl-C: clear the line.
    Interrupt,
    Left,
    Right,
    /// Home, Ctrl-A.
    Home,
    /// End, Ctrl-E.
    End,
    /// One word left (Alt-B, Ctrl-Left).
    WordLeft,
    /// One word right (Alt-F, Ctrl-Right).
    WordRight,
    /// Up, Ctrl-P: the previous line from history.
    Up,
    /// Down, Ctrl-N: the next line from history.
    Down,
    /// Ctrl-U: delete from the start of the line to the cursor.
    KillToStart,
    /// Ctrl-K: delete from the cursor to the end of the line.
    KillToEnd,
    /// Ctrl-W: delete the word before the cursor.
    KillWord,
    /// Ctrl-L: draw the line again.
    Redraw,
}

/// Where the decoder is within a multi-byte input.
#[derive(Debug, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC [`: parameter and intermediate bytes so far.
    Csi(Vec<u8>),
    /// After `ESC O`.
    Ss3,
    /// Inside a bracketed paste.
    Paste,
}

/// Most bytes of one escape sequence; longer ones are dropped as garbage.
const MAX_SEQUENCE: usize = 32;

/// The end of a bracketed paste.
const PASTE_END: &[u8] = b"\x1b[201~";

/// Turns bytes into keys.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    /// Bytes of a UTF-8 character begun but not complete.
    utf8: Vec<u8>,
    /// Bytes of the paste in progress.
    paste: Vec<u8>,
    /// The last key was Enter from a CR: a LF right after it is the same
    /// line break (CR LF).
    after_cr: bool,
}

impl Decoder {
    /// Decodes `bytes`, appending the keys they complete to `keys`.
    pub fn feed(&mut self, bytes: &[u8], keys: &mut Vec<Key>) {
        for &b in bytes {
            self.byte(b, keys);
        }
    }

    /// Whether a sequence is waiting for more bytes (for a lone ESC, the
    /// caller waits a moment, then calls [`Decoder::flush`]).
    pub fn is_pending(&self) -> bool {
        !matches!(self.state, State::Ground) || !self.utf8.is_empty()
    }

    /// Whether a bracketed paste is in progress.
    pub fn in_paste(&self) -> bool {
        matches!(self.state, State::Paste)
    }

    /// No more bytes came for a while: a lone ESC was just ESC (ignored), a
    /// partial character is invalid, and a paste whose end never came ends
    /// here.
    pub fn flush(&mut self, keys: &mut Vec<Key>) {
        if !self.utf8.is_empty() {
            self.utf8.clear();
            keys.push(Key::Char(char::REPLACEMENT_CHARACTER));
        }
        if let State::Paste = self.state {
            self.finish_paste(keys);
        }
        self.state = State::Ground;
    }

    fn byte(&mut self, b: u8, keys: &mut Vec<Key>) {
        let after_cr = std::mem::take(&mut self.after_cr);
        match std::mem::take(&mut self.state) {
            State::Ground => self.ground(b, after_cr, keys),
            State::Escape => match b {
                b'[' => self.state = State::Csi(Vec::new()),
                b'O' => self.state = State::Ss3,
                b'b' | b'B' => keys.push(Key::WordLeft),
                b'f' | b'F' => keys.push(Key::WordRight),
                0x7f | 0x08 => keys.push(Key::KillWord),
                0x1b => self.state = State::Escape,
                // Alt with anything else: nothing.
                _ => {}
            },
            State::Ss3 => {
                if let Some(key) = final_key(b, &[]) {
                    keys.push(key);
                }
            }
            State::Csi(mut params) => {
                if (0x40..=0x7e).contains(&b) {
                    if b == b'~' && params == b"200" {
                        self.state = State::Paste;
                        self.paste.clear();
                    } else if let Some(key) = final_key(b, &params) {
                        keys.push(key);
                    }
                } else if (0x20..=0x3f).contains(&b) && params.len() < MAX_SEQUENCE {
                    params.push(b);
                    self.state = State::Csi(params);
                }
                // Anything else (or too long) ends the sequence as garbage.
            }
            State::Paste => {
                self.paste.push(b);
                if self.paste.ends_with(PASTE_END) {
                    self.paste.truncate(self.paste.len() - PASTE_END.len());
                    self.finish_paste(keys);
                } else {
                    self.state = State::Paste;
                }
            }
        }
    }

    fn ground(&mut self, b: u8, after_cr: bool, keys: &mut Vec<Key>) {
        if !self.utf8.is_empty() || b >= 0x80 {
            self.utf8_byte(b, keys);
            return;
        }
        let key = match b {
            b'\r' => {
                self.after_cr = true;
                Key::Enter
            }
            b'\n' if after_cr => return,
            b'\n' => Key::Enter,
            0x1b => {
                self.state = State::Escape;
                return;
            }
            0x7f | 0x08 => Key::Backspace,
            0x01 => Key::Home,
            0x02 => Key::Left,
            0x03 => Key::Interrupt,
            0x04 => Key::CtrlD,
            0x05 => Key::End,
            0x06 => Key::Right,
            0x0b => Key::KillToEnd,
            0x0c => Key::Redraw,
            0x0e => Key::Down,
            0x10 => Key::Up,
            0x15 => Key::KillToStart,
            0x17 => Key::KillWord,
            b'\t' => Key::Char('\t'),
            0x00..=0x1f => return,
            _ => Key::Char(char::from(b)),
        };
        keys.push(key);
    }

    fn utf8_byte(&mut self, b: u8, keys: &mut Vec<Key>) {
        let continuation = (0x80..=0xbf).contains(&b);
        if !self.utf8.is_empty() && !continuation {
            // The character was cut short: it is invalid, and `b` starts afresh.
            self.utf8.clear();
            keys.push(Key::Char(char::REPLACEMENT_CHARACTER));
            self.ground(b, false, keys);
            return;
        }
        self.utf8.push(b);
        let needed = match self.utf8[0] {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => {
                self.utf8.clear();
                keys.push(Key::Char(char::REPLACEMENT_CHARACTER));
                return;
            }
        };
        if self.utf8.len() == needed {
            let c = std::str::from_utf8(&self.utf8)
                .ok()
                .and_then(|s| s.chars().next())
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            self.utf8.clear();
            keys.push(Key::Char(c));
        }
    }

    fn finish_paste(&mut self, keys: &mut Vec<Key>) {
        let bytes = std::mem::take(&mut self.paste);
        let text = String::from_utf8_lossy(&bytes);
        // Terminals send line breaks in a paste as CR; files may hold CR LF.
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        keys.push(Key::Paste(text));
    }
}

/// The key a CSI or SS3 sequence ending in `last` names, if one we use.
fn final_key(last: u8, params: &[u8]) -> Option<Key> {
    // `1;5C` is Ctrl-Right: a modifier after the semicolon.
    let mut parts = params.split(|&b| b == b';');
    let first = parts.next().unwrap_or_default();
    let modified = parts.next().is_some_and(|m| m != b"1");
    Some(match (last, first) {
        (b'A', _) => Key::Up,
        (b'B', _) => Key::Down,
        (b'C', _) if modified => Key::WordRight,
        (b'D', _) if modified => Key::WordLeft,
        (b'C', _) => Key::Right,
        (b'D', _) => Key::Left,
        (b'H', _) => Key::Home,
        (b'F', _) => Key::End,
        (b'~', b"1" | b"7") => Key::Home,
        (b'~', b"4" | b"8") => Key::End,
        (b'~', b"3") => Key::Delete,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut decoder = Decoder::default();
        let mut keys = Vec::new();
        decoder.feed(bytes, &mut keys);
        keys
    }

    #[test]
    fn text_and_control_keys() {
        assert_eq!(
            keys(b"hi\r"),
            vec![Key::Char('h'), Key::Char('i'), Key::Enter]
        );
        assert_eq!(
            keys(b"a\r\nb\n"),
            vec![Key::Char('a'), Key::Enter, Key::Char('b'), Key::Enter]
        );
        assert_eq!(keys(b"\r\r"), vec![Key::Enter, Key::Enter]);
        assert_eq!(
            keys(b"\x01\x05\x15\x0b\x17\x03\x04\x7f"),
            vec![
                Key::Home,
                Key::End,
                Key::KillToStart,
                Key::KillToEnd,
                Key::KillWord,
                Key::Interrupt,
                Key::CtrlD,
                Key::Backspace
            ]
        );
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1bOH\x1b[3~\x1b[1;5C"),
            vec![
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Home,
                Key::Delete,
                Key::WordRight
            ]
        );
        assert_eq!(
            keys("é日😀".as_bytes()),
            vec![Key::Char('é'), Key::Char('日'), Key::Char('😀')]
        );
        assert_eq!(keys(b"\xffa"), vec![Key::Char('\u{fffd}'), Key::Char('a')]);
        // Unknown sequences are dropped, not typed.
        assert_eq!(keys(b"\x1b[99zx"), vec![Key::Char('x')]);
    }

    #[test]
    fn bytes_split_anywhere_decode_the_same() {
        let input = "ab\x1b[1;5Dé\x1b[200~x\ry\x1b[201~日\r".as_bytes();
        let whole = keys(input);
        for cut in 0..input.len() {
            let mut decoder = Decoder::default();
            let mut got = Vec::new();
            decoder.feed(&input[..cut], &mut got);
            decoder.feed(&input[cut..], &mut got);
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_bracketed_paste_is_one_key() {
        assert_eq!(
            keys(b"\x1b[200~one\rtwo\r\nthree\x03\x1b[201~\r"),
            vec![Key::Paste("one\ntwo\nthree\x03".into()), Key::Enter]
        );
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        decoder.feed(b"\x1b[200~cut", &mut got);
        assert!(got.is_empty() && decoder.in_paste());
        decoder.flush(&mut got);
        assert_eq!(got, vec![Key::Paste("cut".into())]);
    }

    #[test]
    fn a_lone_escape_waits_and_is_then_dropped() {
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        decoder.feed(b"\x1b", &mut got);
        assert!(decoder.is_pending());
        decoder.flush(&mut got);
        decoder.feed(b"x", &mut got);
        assert_eq!(got, vec![Key::Char('x')]);
    }
}
