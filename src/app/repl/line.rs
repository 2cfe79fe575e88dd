//! The line being typed: editing keys, history (in memory only), and how
//! the line is drawn in the one row the prompt has. Pure.
//!
//! The prompt always takes exactly one row: a line wider than the terminal
//! scrolls sideways to keep the cursor in view, and a line break in pasted
//! text shows as `↵`. So redrawing the prompt is always "clear this row,
//! draw it again", wherever the cursor was.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

use super::keys::Key;
use super::screen;

/// Most lines kept in history.
const HISTORY: usize = 1000;

/// What a key did to the line.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit {
    /// The line changed (or the cursor moved): draw it again.
    Changed,
    /// Nothing to do.
    Unchanged,
    /// Enter: the text typed, now taken from the line.
    Submit(String),
    /// Ctrl-D on an empty line.
    Quit,
    /// Ctrl-C: the line was cleared (it held this much text).
    Interrupted(bool),
}

/// The line being edited.
#[derive(Debug, Default)]
pub struct Line {
    text: Vec<char>,
    /// The cursor, as an index into `text`.
    cursor: usize,
    history: Vec<String>,
    /// While browsing history: the entry shown, and the line as it was
    /// before browsing began.
    browsing: Option<(usize, Vec<char>)>,
}

impl Line {
    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Applies one key.
    pub fn apply(&mut self, key: Key) -> Edit {
        match key {
            Key::Char(c) => {
                self.insert(&[c]);
                Edit::Changed
            }
            Key::Paste(text) => {
                // Copying whole lines takes the last line break too: Enter
                // sends, not the paste.
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let chars: Vec<char> = text.chars().collect();
                self.insert(&chars);
                Edit::Changed
            }
            Key::Enter => {
                let text: String = std::mem::take(&mut self.text).into_iter().collect();
                self.cursor = 0;
                self.browsing = None;
                if !text.trim().is_empty() && !text.starts_with(' ') {
                    self.remember(&text);
                }
                Edit::Submit(text)
            }
            Key::Interrupt => {
                let had = !self.text.is_empty();
                self.text.clear();
                self.cursor = 0;
                self.browsing = None;
                Edit::Interrupted(had)
            }
            Key::CtrlD if self.text.is_empty() => Edit::Quit,
            Key::CtrlD | Key::Delete => {
                if self.cursor < self.text.len() {
                    self.text.remove(self.cursor);
                    self.skip_zero_width_right(true);
                    Edit::Changed
                } else {
                    Edit::Unchanged
                }
            }
            Key::Backspace => {
                if self.cursor == 0 {
                    return Edit::Unchanged;
                }
                let end = self.cursor;
                self.cursor -= 1;
                self.back_over_zero_width();
                self.text.drain(self.cursor..end);
                Edit::Changed
            }
            Key::Left => self.move_to(self.left_of(self.cursor)),
            Key::Right => self.move_to(self.right_of(self.cursor)),
            Key::Home => self.move_to(0),
            Key::End => self.move_to(self.text.len()),
            Key::WordLeft => self.move_to(self.word_start()),
            Key::WordRight => self.move_to(self.word_end()),
            Key::KillToStart => {
                self.text.drain(..self.cursor);
                self.cursor = 0;
                Edit::Changed
            }
            Key::KillToEnd => {
                self.text.truncate(self.cursor);
                Edit::Changed
            }
            Key::KillWord => {
                let start = self.word_start();
                self.text.drain(start..self.cursor);
                self.cursor = start;
                Edit::Changed
            }
            Key::Up => self.history_step(-1),
            Key::Down => self.history_step(1),
            Key::Redraw => Edit::Changed,
        }
    }

    fn insert(&mut self, chars: &[char]) {
        self.text
            .splice(self.cursor..self.cursor, chars.iter().copied());
        self.cursor += chars.len();
    }

    fn move_to(&mut self, cursor: usize) -> Edit {
        if cursor == self.cursor {
            Edit::Unchanged
        } else {
            self.cursor = cursor;
            Edit::Changed
        }
    }

    fn is_zero_width(c: char) -> bool {
        c != '\n' && !c.is_control() && c.width() == Some(0)
    }

    /// The cursor position one character left, over combining marks.
    fn left_of(&self, mut at: usize) -> usize {
        while at > 0 {
            at -= 1;
            if !Self::is_zero_width(self.text[at]) {
                break;
            }
        }
        at
    }

    /// The cursor position one character right, over combining marks.
    fn right_of(&self, mut at: usize) -> usize {
        if at < self.text.len() {
            at += 1;
        }
        while at < self.text.len() && Self::is_zero_width(self.text[at]) {
            at += 1;
        }
        at
    }

    fn back_over_zero_width(&mut self) {
        while self.cursor > 0 && Self::is_zero_width(self.text[self.cursor]) {
            self.cursor -= 1;
        }
    }

    fn skip_zero_width_right(&mut self, delete: bool) {
        while self.cursor < self.text.len() && Self::is_zero_width(self.text[self.cursor]) {
            if delete {
                self.text.remove(self.cursor);
            } else {
                self.cursor += 1;
            }
        }
    }

    fn word_start(&self) -> usize {
        let mut at = self.cursor;
        while at > 0 && self.text[at - 1].is_whitespace() {
            at -= 1;
        }
        while at > 0 && !self.text[at - 1].is_whitespace() {
            at -= 1;
        }
        at
    }

    fn word_end(&self) -> usize {
        let mut at = self.cursor;
        while at < self.text.len() && self.text[at].is_whitespace() {
            at += 1;
        }
        while at < self.text.len() && !self.text[at].is_whitespace() {
            at += 1;
        }
        at
    }

    fn remember(&mut self, text: &str) {
        if self.history.last().map(String::as_str) != Some(text) {
            self.history.push(text.to_string());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
    }

    fn history_step(&mut self, step: isize) -> Edit {
        let len = self.history.len();
        let current = self.browsing.as_ref().map_or(len, |(i, _)| *i);
        let Some(next) = current.checked_add_signed(step).filter(|&n| n <= len) else {
            return Edit::Unchanged;
        };
        if next == current {
            return Edit::Unchanged;
        }
        let saved = match self.browsing.take() {
            Some((_, saved)) => saved,
            None => std::mem::take(&mut self.text),
        };
        if next == len {
            self.text = saved;
        } else {
            self.text = self.history[next].chars().collect();
            self.browsing = Some((next, saved));
        }
        self.cursor = self.text.len();
        Edit::Changed
    }

    /// The prompt row: `prompt` and as much of the line as fits in
    /// `budget` columns around the cursor; returns the row and the column
    /// the cursor is in.
    pub fn render(&self, prompt: &str, budget: usize) -> (String, usize) {
        let prompt = screen::fit_prompt(prompt, budget);
        let prompt_width = screen::width(&prompt);
        let room = budget - prompt_width;
        let cells: Vec<String> = self.text.iter().map(|&c| shown(c)).collect();
        let widths: Vec<usize> = cells.iter().map(|c| screen::width(c)).collect();
        // Scroll so that the cursor (and one cell after it) is in view.
        let mut start = 0;
        let before = |start: usize| widths[start..self.cursor].iter().sum::<usize>();
        while start < self.cursor && before(start) + 1 > room {
            start += 1;
        }
        let mut row = prompt;
        let mut used = 0;
        for (cell, &w) in cells[start..].iter().zip(&widths[start..]) {
            if used + w > room {
                break;
            }
            row.push_str(cell);
            used += w;
        }
        (row, prompt_width + before(start))
    }
}

/// How a character of the line is drawn: line breaks as `↵`, other control
/// characters in caret notation.
fn shown(c: char) -> String {
    match c {
        '\n' => "\u{21b5}".into(),
        c if (c as u32) < 0x20 => format!("^{}", char::from(b'@' + c as u8)),
        '\u{7f}' => "^?".into(),
        c if c.is_control() => {
            let mut s = String::new();
            let _ = write!(s, "\\u{{{:x}}}", c as u32);
            s
        }
        c => crate::sanitize::for_display(c.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(line: &mut Line, text: &str) {
        for c in text.chars() {
            line.apply(Key::Char(c));
        }
    }

    #[test]
    fn editing_keys() {
        let mut line = Line::default();
        typed(&mut line, "hello world");
        line.apply(Key::KillWord);
        typed(&mut line, "there");
        line.apply(Key::Home);
        line.apply(Key::Delete);
        typed(&mut line, "H");
        line.apply(Key::End);
        line.apply(Key::Backspace);
        assert_eq!(line.apply(Key::Enter), Edit::Submit("Hello ther".into()));
        assert!(line.is_empty());
        typed(&mut line, "abc def");
        line.apply(Key::WordLeft);
        line.apply(Key::KillToEnd);
        line.apply(Key::Left);
        line.apply(Key::KillToStart);
        assert_eq!(line.apply(Key::Enter), Edit::Submit(" ".into()));
        assert_eq!(line.apply(Key::CtrlD), Edit::Quit);
        typed(&mut line, "x");
        assert_eq!(line.apply(Key::Interrupt), Edit::Interrupted(true));
        assert_eq!(line.apply(Key::Interrupt), Edit::Interrupted(false));
    }

    #[test]
    fn combining_marks_move_with_their_letter() {
        let mut line = Line::default();
        typed(&mut line, "e\u{301}x");
        line.apply(Key::Left);
        line.apply(Key::Left);
        assert_eq!(line.cursor, 0);
        line.apply(Key::Right);
        assert_eq!(line.cursor, 2);
        line.apply(Key::Backspace);
        assert_eq!(line.apply(Key::Enter), Edit::Submit("x".into()));
    }

    #[test]
    fn history_goes_back_and_returns_to_the_line_being_typed() {
        let mut line = Line::default();
        for text in ["one", "two", " secret"] {
            typed(&mut line, text);
            line.apply(Key::Enter);
        }
        typed(&mut line, "draft");
        line.apply(Key::Up);
        assert_eq!(line.text.iter().collect::<String>(), "two");
        line.apply(Key::Up);
        line.apply(Key::Up);
        assert_eq!(line.text.iter().collect::<String>(), "one");
        line.apply(Key::Down);
        line.apply(Key::Down);
        assert_eq!(line.text.iter().collect::<String>(), "draft");
    }

    #[test]
    fn the_prompt_row_scrolls_to_keep_the_cursor_in_view() {
        let mut line = Line::default();
        typed(&mut line, &"x".repeat(100));
        let (row, column) = line.render("bob> ", 40);
        assert_eq!(screen::width(&row), 39);
        assert_eq!(column, 39);
        line.apply(Key::Home);
        let (row, column) = line.render("bob> ", 40);
        assert_eq!(row, format!("bob> {}", "x".repeat(35)));
        assert_eq!(column, 5);
        let mut line = Line::default();
        line.apply(Key::Paste("a\nb\x1b".into()));
        assert_eq!(line.render("> ", 40).0, "> a\u{21b5}b^[");
    }
}
