//! Making text from a peer safe to show on a terminal.
//!
//! Anything a peer sends (messages, its nickname) could contain control
//! characters: an escape sequence can move the cursor, rewrite the screen,
//! change the window title or, on some terminals, do worse. Before display,
//! every control character except newline and tab becomes a visible,
//! inert spelling, and so do the Unicode controls that reorder text
//! (bidirectional overrides, as in "Trojan Source"). Bytes that are not
//! UTF-8 show as U+FFFD.

use std::fmt::Write as _;

/// Whether `c` is shown as an escape instead of itself.
fn is_dangerous(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Text for display, with newlines and tabs kept.
pub fn for_display(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !is_dangerous(c) {
            out.push(c);
        } else if (c as u32) < 0x20 {
            // Caret notation, as `cat -v` prints: ESC is ^[.
            out.push('^');
            out.push(char::from(b'@' + c as u8));
        } else if c == '\u{7f}' {
            out.push_str("^?");
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    out
}

/// Characters that show as nothing: harmless inside a message (emoji need
/// the zero-width joiner), but in a name they make "b\u{200b}ob" look like
/// "bob".
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Text for display on one line, such as a name: newlines, tabs and
/// invisible characters are escaped too.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in for_display(text.as_bytes()).chars() {
        match c {
            '\n' => out.push_str("^J"),
            '\t' => out.push_str("^I"),
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Decodes text that arrives in pieces, holding back a character cut in two
/// at a piece's end until the rest arrives.
#[derive(Debug, Default)]
pub struct Utf8Pieces {
    pending: Vec<u8>,
}

impl Utf8Pieces {
    /// The text of `data` (and of bytes held back before it), up to the last
    /// complete character. Invalid bytes become U+FFFD.
    pub fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let keep = match std::str::from_utf8(&self.pending) {
            Ok(_) => 0,
            // An incomplete character at the very end: wait for its rest.
            Err(e) if e.error_len().is_none() => self.pending.len() - e.valid_up_to(),
            Err(_) => incomplete_tail(&self.pending),
        };
        let complete = self.pending.len() - keep;
        let text = String::from_utf8_lossy(&self.pending[..complete]).into_owned();
        self.pending.drain(..complete);
        text
    }

    /// Whatever is still held back, when no more is coming.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// How many bytes at the end of `bytes` start a character that is not
/// complete yet (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            0x80..=0xBF => continue,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_become_visible() {
        assert_eq!(for_display(b"\x1b[2Jhi\x07"), "^[[2Jhi^G");
        assert_eq!(for_display(b"a\rb"), "a^Mb");
        assert_eq!(for_display("x\u{9b}31m".as_bytes()), "x\\u{9b}31m");
        assert_eq!(for_display("\u{202e}abc".as_bytes()), "\\u{202e}abc");
        assert_eq!(
            for_display(b"keep\nlines\tand tabs"),
            "keep\nlines\tand tabs"
        );
        assert_eq!(for_display(b"\xff\xfe"), "\u{fffd}\u{fffd}");
        assert_eq!(for_display(b"\x7f"), "^?");
        assert_eq!(one_line("a\nb\tc"), "a^Jb^Ic");
        assert_eq!(one_line("b\u{200b}ob"), "b\\u{200b}ob");
    }

    #[test]
    fn pieces_keep_characters_whole() {
        let text = "héllo wörld €€ 日本";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut pieces = Utf8Pieces::default();
            let mut out = pieces.push(&bytes[..cut]);
            out += &pieces.push(&bytes[cut..]);
            out += &pieces.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
        let mut pieces = Utf8Pieces::default();
        assert_eq!(pieces.push(b"a\xffb\xe2\x82"), "a\u{fffd}b");
        assert_eq!(pieces.push(b"\xac"), "€");
    }

    proptest! {
        /// No input, however hostile, yields a byte that a terminal would
        /// interpret: no C0 control but newline and tab, no DEL, no C1
        /// control (U+0080 to U+009F, which UTF-8 encodes as 0xC2 0x80..0x9F),
        /// and no bidirectional override.
        #[test]
        fn output_has_no_control_sequences(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let shown = for_display(&bytes);
            for c in shown.chars() {
                prop_assert!(!is_dangerous(c), "{c:?} in {shown:?}");
            }
            for b in shown.bytes() {
                prop_assert!(b >= 0x20 || b == b'\n' || b == b'\t');
                prop_assert!(b != 0x7f);
            }
            prop_assert!(!shown.contains('\x1b'), "ESC in output");
        }

        #[test]
        fn printable_text_is_unchanged(text in "[ -~\n\té€あ]{0,200}") {
            prop_assert_eq!(for_display(text.as_bytes()), text);
        }
    }
}
