//! Names a message we sent by its first words, as typed: the reports of
//! undelivered messages speak in the user's terms, not in ids the user
//! never saw.

use crate::error::Unsent;
use crate::net::conversation::{SentHead, Summary};
use crate::sanitize;

/// About how many characters of a message a preview shows.
const PREVIEW_CHARS: usize = 40;

/// The messages of a conversation left without a receipt, each with its
/// preview.
pub(super) fn unsent(summary: &Summary) -> Vec<Unsent> {
    summary
        .unacknowledged
        .iter()
        .map(|&id| Unsent {
            id,
            preview: summary
                .head(id)
                .map_or_else(|| format!("message #{id}"), describe),
        })
        .collect()
}

/// A message's first words, quoted, on one line and safe for the terminal,
/// cut at a word boundary near [`PREVIEW_CHARS`] characters with "…"; or
/// "a message of N bytes" when it is not UTF-8 text or shows nothing.
pub(super) fn describe(sent: &SentHead) -> String {
    let bytes_of = || match sent.length {
        1 => "a message of 1 byte".to_string(),
        n => format!("a message of {n} bytes"),
    };
    // The head may end inside a character: keep the valid prefix, unless
    // the whole message was kept and is not valid.
    let text = match std::str::from_utf8(&sent.head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() && (sent.head.len() as u64) < sent.length => {
            std::str::from_utf8(&sent.head[..e.valid_up_to()]).expect("valid up to here")
        }
        Err(_) => return bytes_of(),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return bytes_of();
    }
    let whole = sent.head.len() as u64 == sent.length;
    let mut shown = String::new();
    let mut cut = false;
    for (i, word) in words.iter().enumerate() {
        let word = sanitize::one_line(word);
        let len = shown.chars().count() + usize::from(i > 0) + word.chars().count();
        if len > PREVIEW_CHARS {
            if i == 0 {
                shown = word.chars().take(PREVIEW_CHARS).collect();
            }
            cut = true;
            break;
        }
        if i > 0 {
            shown.push(' ');
        }
        shown.push_str(&word);
    }
    // The head may have stopped in the middle of a word.
    if !whole && !cut {
        cut = true;
        if let Some(space) = shown.rfind(' ') {
            shown.truncate(space);
        }
    }
    if cut {
        shown.push('…');
    }
    format!("\"{shown}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &[u8]) -> SentHead {
        SentHead {
            id: 1,
            length: text.len() as u64,
            head: text.to_vec(),
        }
    }

    #[test]
    fn short_text_is_quoted_whole() {
        assert_eq!(describe(&head(b"hello there\n")), "\"hello there\"");
    }

    #[test]
    fn long_text_is_cut_at_a_word() {
        assert_eq!(
            describe(&head(
                b"Meet at the usual place at nine, bring the documents"
            )),
            "\"Meet at the usual place at nine, bring…\""
        );
    }

    #[test]
    fn a_long_word_is_cut_too() {
        let text = "x".repeat(100);
        assert_eq!(
            describe(&head(text.as_bytes())),
            format!("\"{}…\"", "x".repeat(40))
        );
    }

    #[test]
    fn a_head_cut_mid_word_drops_the_partial_word() {
        let sent = SentHead {
            id: 1,
            length: 1000,
            head: b"one two thr".to_vec(),
        };
        assert_eq!(describe(&sent), "\"one two…\"");
    }

    #[test]
    fn control_and_bidi_characters_are_neutralised() {
        let shown = describe(&head("pay \u{202e}evil\x1b[2J now".as_bytes()));
        assert!(!shown.contains('\u{202e}'), "{shown}");
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(shown.starts_with("\"pay "), "{shown}");
    }

    #[test]
    fn binary_or_blank_is_named_by_size() {
        assert_eq!(describe(&head(&[0xff, 0xfe, 0x00])), "a message of 3 bytes");
        assert_eq!(describe(&head(b"   \n")), "a message of 4 bytes");
        assert_eq!(describe(&head(b"")), "a message of 0 bytes");
        assert_eq!(describe(&head(b"\n")), "a message of 1 byte");
    }
}
