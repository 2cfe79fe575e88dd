//! What the terminal shows, as rows no wider than the terminal: a peer's
//! text, chat's own notices and our own lines as sent. Pure: text in, rows
//! out.
//!
//! The rule that keeps a peer from passing for chat: every row that shows
//! peer text starts with the peer's label (`[bob ✓] `, `[mallory ?] `) or
//! with the continuation [`MARKER`], and chat's own rows never start with
//! either (see [`notice_rows`]). Rows are cut here, to the width of the
//! terminal, so that no row relies on the terminal's own wrapping, which
//! would start a row with whatever text the peer chose. Peer text is made
//! safe for the terminal ([`sanitize::for_display`]) and tabs become spaces,
//! so the width of every row is known.
//!
//! A label holds a name: the local name of a pinned key, or the nickname an
//! unverified peer announced. A nickname is the peer's choice, so it is
//! escaped ([`escape_name`]) to letters, digits, single spaces and `-_.@+'`:
//! no bracket, check mark, marker or look-alike symbol can end the label
//! early or fake a verified one.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

use super::super::trust_policy::{PeerView, Standing};
use crate::sanitize;

/// Starts every row of peer text that does not start with its label.
pub const MARKER: &str = "\u{2502} ";

/// The first character of [`MARKER`].
const MARKER_CHAR: char = '\u{2502}';

/// Shown after a verified name in labels and prompts.
pub const VERIFIED: &str = "\u{2713}";

/// Widest name shown in a label or prompt, in columns; longer ones are cut
/// with an ellipsis.
const MAX_NAME_WIDTH: usize = 32;

/// Narrowest row budget used, whatever the terminal claims.
const MIN_BUDGET: usize = 16;

/// Tab stops in peer text, every this many columns.
const TAB: usize = 8;

/// Columns a row may use on a terminal `width` columns wide. One column is
/// kept free: a row that fills the last column leaves some terminals about
/// to wrap, and a character that this module counts as one column may be
/// drawn as two (East Asian ambiguous width).
pub fn budget(width: usize) -> usize {
    width.saturating_sub(1).max(MIN_BUDGET)
}

/// Columns a character takes. Control characters never reach here (they are
/// escaped first); count them as one so that a mistake cannot overflow.
fn char_width(c: char) -> usize {
    if c.is_control() {
        1
    } else {
        c.width().unwrap_or(1)
    }
}

/// Columns `text` takes. A character followed by VS16 (emoji presentation)
/// counts as two, as terminals draw it.
pub fn width(text: &str) -> usize {
    let mut total = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut w = char_width(c);
        if chars.peek() == Some(&'\u{FE0F}') {
            w = w.max(2);
        }
        total += w;
    }
    total
}

/// A name as it may appear in a label, prompt or notice: letters, digits,
/// `-_.@+'` and single inner spaces stay; everything else, brackets, check
/// marks, symbols, controls, invisible characters included, is written as
/// `\u{…}`. Cut to [`MAX_NAME_WIDTH`] columns.
pub fn escape_name(name: &str) -> String {
    let mut out = String::new();
    let mut chars = name.chars().peekable();
    let mut previous_space = true;
    while let Some(c) = chars.next() {
        let at_end = chars.peek().is_none();
        let plain = c.is_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '@' | '+' | '\'')
            || (c == ' ' && !previous_space && !at_end);
        if plain {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        previous_space = c == ' ';
    }
    if out.is_empty() {
        out.push_str("\\u{0}");
    }
    truncate(&out, MAX_NAME_WIDTH)
}

/// `text` cut to `max` columns, with an ellipsis if anything was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('\u{2026}');
    out
}

/// A prompt cut to fit a row of `budget` columns with room left to type:
/// at most two thirds of the row, keeping its end (where the trust marker
/// is), with an ellipsis before it if anything was cut.
pub fn fit_prompt(prompt: &str, budget: usize) -> String {
    let max = budget * 2 / 3;
    if width(prompt) <= max {
        return prompt.to_string();
    }
    let mut kept = Vec::new();
    let mut used = 1;
    for c in prompt.chars().rev() {
        let w = char_width(c);
        if used + w > max {
            break;
        }
        kept.push(c);
        used += w;
    }
    std::iter::once('\u{2026}')
        .chain(kept.into_iter().rev())
        .collect()
}

/// The peer's name as shown: its pinned local name, or its escaped nickname.
pub fn name(view: &PeerView) -> String {
    match &view.standing {
        Standing::Verified(name) => escape_name(name),
        Standing::Unverified => escape_name(&view.nickname),
    }
}

/// The label before a peer's rows, without brackets: `bob ✓` or `mallory ?`.
pub fn label(view: &PeerView) -> String {
    match &view.standing {
        Standing::Verified(_) => format!("{} {VERIFIED}", name(view)),
        Standing::Unverified => format!("{} ?", name(view)),
    }
}

/// The prompt for lines addressed to this peer.
pub fn prompt(view: &PeerView) -> String {
    match &view.standing {
        Standing::Verified(_) => format!("{} {VERIFIED}> ", name(view)),
        Standing::Unverified => format!("{} (unverified)> ", name(view)),
    }
}

/// Cuts `text` (one logical line, no control characters) into rows:
/// the first starts with `first`, the others with `next`; none is wider
/// than `budget`, provided each prefix leaves eight columns free. Breaks
/// after a space when there is one in the second half of the row, else
/// anywhere. Tabs become spaces.
fn wrap_line(text: &str, first: &str, next: &str, budget: usize, rows: &mut Vec<String>) {
    let next_width = width(next);
    let mut row = first.to_string();
    let mut start = width(first);
    let mut used = start;
    // Where the row could be broken after a space: byte offset, columns.
    let mut space: Option<(usize, usize)> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let (c, w, repeat) = if c == '\t' {
            (' ', 1, TAB - (used - start) % TAB)
        } else if chars.peek() == Some(&'\u{FE0F}') {
            (c, char_width(c).max(2), 1)
        } else {
            (c, char_width(c), 1)
        };
        for _ in 0..repeat {
            if used + w > budget && used > start {
                let carried = match space {
                    Some((at, columns)) if columns > start + (budget - start) / 2 => {
                        row.split_off(at)
                    }
                    _ => String::new(),
                };
                rows.push(std::mem::take(&mut row));
                row.push_str(next);
                row.push_str(&carried);
                start = next_width;
                used = start + width(&carried);
                space = None;
            }
            row.push(c);
            used += w;
            if c == ' ' {
                space = Some((row.len(), used));
            }
        }
    }
    rows.push(row);
}

/// A peer's text (any bytes it sent, as text) under its `label`: the first
/// row starts with `[label] `, every other with [`MARKER`].
pub fn peer_rows(label: &str, text: &str, terminal_width: usize) -> Vec<String> {
    let budget = budget(terminal_width);
    let shown = sanitize::for_display(text.as_bytes());
    let prefix = format!("[{}] ", truncate(label, budget / 2 - 3));
    let mut rows = Vec::new();
    for (i, line) in shown.split('\n').enumerate() {
        let first = if i == 0 { prefix.as_str() } else { MARKER };
        wrap_line(line, first, MARKER, budget, &mut rows);
    }
    rows
}

/// Whether a row could be taken for peer text.
fn looks_like_peer_row(row: &str) -> bool {
    row.starts_with('[') || row.starts_with(MARKER_CHAR)
}

/// Chat's own notice, as rows: lines wrap with a two-space indent, and a
/// line that would start like a peer's row is marked as chat's own.
pub fn notice_rows(text: &str, terminal_width: usize) -> Vec<String> {
    let budget = budget(terminal_width);
    let shown = sanitize::for_display(text.as_bytes());
    let mut rows = Vec::new();
    for line in shown.split('\n') {
        let guarded;
        let line = if looks_like_peer_row(line) {
            guarded = format!("chat: {line}");
            guarded.as_str()
        } else {
            line
        };
        wrap_line(line, "", "  ", budget, &mut rows);
    }
    rows
}

/// A line we typed, as it stays on screen after Enter: the prompt, then the
/// text, with further rows under `... `.
pub fn echo_rows(prompt: &str, text: &str, terminal_width: usize) -> Vec<String> {
    let budget = budget(terminal_width);
    let prompt = fit_prompt(prompt, budget);
    let shown = sanitize::for_display(text.as_bytes());
    let mut rows = Vec::new();
    for (i, line) in shown.split('\n').enumerate() {
        let first = if i == 0 { prompt.as_str() } else { "... " };
        wrap_line(line, first, "... ", budget, &mut rows);
    }
    rows
}

/// A byte count for people: `5.0 MiB (5242880 bytes)`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_fits(rows: &[String], terminal_width: usize) {
        for row in rows {
            assert!(
                width(row) <= budget(terminal_width),
                "row {row:?} is {} columns",
                width(row)
            );
        }
    }

    #[test]
    fn names_cannot_close_the_label_or_claim_a_check_mark() {
        assert_eq!(escape_name("bob"), "bob");
        assert_eq!(escape_name("José Ñ"), "José Ñ");
        assert_eq!(escape_name("山田"), "山田");
        assert_eq!(escape_name("o'brien-2"), "o'brien-2");
        assert_eq!(escape_name("bob \u{2713}"), "bob \\u{2713}");
        assert_eq!(
            escape_name("bob ✓] hi [x"),
            "bob \\u{2713}\\u{5d} hi \\u{5b}x"
        );
        assert_eq!(escape_name("a\u{2502}b"), "a\\u{2502}b");
        assert_eq!(escape_name("a  b "), "a \\u{20}b\\u{20}");
        assert_eq!(escape_name(" a"), "\\u{20}a");
        assert_eq!(escape_name("b\u{200b}ob"), "b\\u{200b}ob");
        assert_eq!(escape_name("\u{ff3b}x\u{ff3d}"), "\\u{ff3b}x\\u{ff3d}");
        assert_eq!(escape_name("x\u{1b}[2J"), "x\\u{1b}\\u{5b}2J");
        assert_eq!(
            escape_name(&"w".repeat(64)),
            format!("{}\u{2026}", "w".repeat(31))
        );
    }

    #[test]
    fn a_multi_line_message_is_labelled_then_marked() {
        assert_eq!(
            peer_rows(
                "bob \u{2713}",
                "hi\nConnected to alice\n[alice \u{2713}] x",
                80
            ),
            vec![
                "[bob \u{2713}] hi".to_string(),
                format!("{MARKER}Connected to alice"),
                format!("{MARKER}[alice \u{2713}] x"),
            ]
        );
        assert_eq!(peer_rows("bob ?", "", 80), vec!["[bob ?] ".to_string()]);
    }

    #[test]
    fn long_lines_are_cut_before_the_terminal_edge() {
        let text = format!("{}{}", "x".repeat(72), "FAKE NOTICE");
        let rows = peer_rows("bob ?", &text, 80);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].starts_with("[bob ?] "));
        assert!(rows[1].starts_with(MARKER));
        assert_fits(&rows, 80);
        // Words are kept whole where a space allows.
        let rows = peer_rows("a ?", &"word ".repeat(40), 40);
        assert_fits(&rows, 40);
        assert!(
            rows.iter()
                .skip(1)
                .all(|r| r.starts_with(&format!("{MARKER}word"))),
            "{rows:?}"
        );
    }

    #[test]
    fn wide_characters_count_twice_and_tabs_become_spaces() {
        let rows = peer_rows("a ?", &"日".repeat(100), 80);
        assert_fits(&rows, 80);
        assert_eq!(width(&rows[0]), 78, "{rows:?}");
        let rows = peer_rows("a ?", "\tx", 80);
        assert_eq!(rows, vec!["[a ?]         x".to_string()]);
        assert_eq!(width("\u{2764}\u{fe0f}"), 2);
    }

    #[test]
    fn notices_never_start_like_peer_rows() {
        assert_eq!(notice_rows("[x] y", 80), vec!["chat: [x] y".to_string()]);
        assert_eq!(
            notice_rows(&format!("{MARKER}y"), 80),
            vec![format!("chat: {MARKER}y")]
        );
        let rows = notice_rows(&"word ".repeat(30), 40);
        assert!(rows[1].starts_with("  word"), "{rows:?}");
        assert_fits(&rows, 40);
    }

    #[test]
    fn a_long_prompt_keeps_its_end() {
        assert_eq!(fit_prompt("bob> ", 79), "bob> ");
        assert_eq!(
            fit_prompt(&format!("{} (unverified)> ", "x".repeat(60)), 30),
            format!("\u{2026}{} (unverified)> ", "x".repeat(4))
        );
    }

    #[test]
    fn echoed_lines_continue_under_dots() {
        assert_eq!(
            echo_rows("bob \u{2713}> ", "one\ntwo", 80),
            vec!["bob \u{2713}> one".to_string(), "... two".to_string()]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size(10), "10 bytes");
        assert_eq!(size(5 << 20), "5.0 MiB (5242880 bytes)");
        assert_eq!(size(65537), "64.0 KiB (65537 bytes)");
    }

    proptest! {
        /// Whatever a peer sends, at whatever width: every row fits, the
        /// first starts with the label and every other with the marker.
        #[test]
        fn every_peer_row_is_labelled_and_fits(
            text in proptest::collection::vec(any::<char>(), 0..400).prop_map(|v| v.into_iter().collect::<String>()),
            terminal_width in 1usize..200,
        ) {
            let rows = peer_rows("bob ?", &text, terminal_width);
            prop_assert!(!rows.is_empty());
            prop_assert!(rows[0].starts_with("[bob ?] "));
            for row in &rows[1..] {
                prop_assert!(row.starts_with(MARKER), "{:?}", row);
            }
            for row in &rows {
                prop_assert!(width(row) <= budget(terminal_width), "{:?}", row);
                prop_assert!(!row.chars().any(|c| c.is_control()), "{:?}", row);
            }
        }

        #[test]
        fn notices_never_look_like_peer_rows(
            text in proptest::collection::vec(any::<char>(), 0..300).prop_map(|v| v.into_iter().collect::<String>()),
            terminal_width in 1usize..200,
        ) {
            for row in notice_rows(&text, terminal_width) {
                prop_assert!(!looks_like_peer_row(&row), "{:?}", row);
                prop_assert!(width(&row) <= budget(terminal_width), "{:?}", row);
            }
        }
    }
}
