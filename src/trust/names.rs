//! Local names for pinned peers, and why a peer's nickname is not always one.
//!
//! A nickname is what a peer claims; a local name is what the user sees
//! next to a verified key. When a new key is pinned under its nickname, the
//! name must not be one a reader could take for a contact already pinned:
//! equal, equal but for case, or confusable in the sense of Unicode's UTS #39
//! (Cyrillic "аda" for "ada", "Ⅰan" for "Ian", invisible characters), and
//! not a mix of scripts that could be made to look like a later contact.
//! Such a key is pinned under a name made from its fingerprint instead.

use unicode_normalization::UnicodeNormalization;
use unicode_security::{MixedScript, skeleton};

use crate::crypto::Fingerprint;

/// Longest local name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// How many base64 characters of the fingerprint a generated name keeps.
const FINGERPRINT_NAME_CHARS: usize = 10;

/// Whether `name` can be a local peer name: 1 to 64 letters, digits or `-_.@+`.
pub fn is_valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&count) && name.chars().all(is_name_char)
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+')
}

/// A valid local name made from a peer's announced nickname: every other
/// character becomes `_`; an empty result becomes `peer`.
pub fn name_from_nickname(nickname: &str) -> String {
    let name: String = nickname
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if name.is_empty() { "peer".into() } else { name }
}

/// A name made from a key's fingerprint: `peer-` and the first characters
/// of its base64 (letters and digits only), so that it matches the start of
/// the fingerprint the user sees, e.g. `peer-G9fCEcxiKZ` for
/// `SHA256:G9fCEcxiKZaIep...`.
pub fn name_from_fingerprint(fingerprint: &Fingerprint) -> String {
    let text = fingerprint.to_string();
    let encoded = text
        .strip_prefix(crate::crypto::fingerprint::PREFIX)
        .unwrap_or(&text);
    let start: String = encoded
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(FINGERPRINT_NAME_CHARS)
        .collect();
    format!("peer-{start}")
}

/// The forms under which two texts look alike: the UTS #39 skeleton of the
/// text, and of its compatibility-normalised lower case, both lower-cased.
/// Two texts are confusable when they share one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookalikeKey([String; 2]);

impl LookalikeKey {
    /// The key of `text`.
    pub fn of(text: &str) -> Self {
        let folded: String = text.nfkc().flat_map(char::to_lowercase).collect();
        let key = |t: &str| -> String { skeleton(t).flat_map(char::to_lowercase).collect() };
        Self([key(text), key(&folded)])
    }

    /// Whether a reader could take one text for the other.
    pub fn confusable_with(&self, other: &Self) -> bool {
        self.0.iter().any(|a| other.0.contains(a))
    }
}

/// Whether two texts could be taken for each other (equal included).
pub fn confusable(a: &str, b: &str) -> bool {
    LookalikeKey::of(a).confusable_with(&LookalikeKey::of(b))
}

/// Why a nickname is not used as a new peer's local name by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suspicion {
    /// It equals, or is confusable with, this pinned name.
    LooksLike(String),
    /// It holds characters that show as nothing (zero-width, bidi controls).
    Invisible,
    /// Its letters mix scripts (as Latin and Cyrillic do in "pаypal").
    MixedScripts,
}

impl Suspicion {
    /// Judges `nickname` (and the local name made from it) against the
    /// names already pinned. Lookalikes come first: they are the reason a
    /// user most needs to hear.
    pub fn of<'a>(nickname: &str, pinned: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let derived = name_from_nickname(nickname);
        let keys = [LookalikeKey::of(nickname), LookalikeKey::of(&derived)];
        for name in pinned {
            let key = LookalikeKey::of(name);
            if keys.iter().any(|k| k.confusable_with(&key)) {
                return Some(Suspicion::LooksLike(name.to_string()));
            }
        }
        if has_invisible(nickname) {
            return Some(Suspicion::Invisible);
        }
        if !derived.as_str().is_single_script() {
            return Some(Suspicion::MixedScripts);
        }
        None
    }

    /// Says why, of a peer that calls itself `nickname`.
    pub fn explain(&self, nickname: &str) -> String {
        let shown = crate::sanitize::one_line(nickname);
        match self {
            Suspicion::LooksLike(name) if name == nickname => format!(
                "The peer calls itself {shown:?}, the name of a contact you pinned to another key"
            ),
            Suspicion::LooksLike(name) => format!(
                "The peer calls itself {shown:?}, which looks like your pinned contact {name:?}"
            ),
            Suspicion::Invisible => {
                format!("The peer calls itself {shown:?}, a name with invisible characters in it")
            }
            Suspicion::MixedScripts => format!(
                "The peer calls itself {shown:?}, a name that mixes alphabets (a way to imitate other names)"
            ),
        }
    }
}

/// Whether `text` holds a default-ignorable code point (zero-width spaces
/// and joiners, bidi controls, variation selectors, ...): the characters
/// the UTS #39 skeleton drops because they show as nothing.
fn has_invisible(text: &str) -> bool {
    let mut buffer = [0u8; 4];
    text.chars()
        .any(|c| skeleton(c.encode_utf8(&mut buffer)).next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nickname_to_name() {
        assert_eq!(name_from_nickname("bob"), "bob");
        assert_eq!(name_from_nickname("bob smith\x1b[2J"), "bob_smith__2J");
        assert_eq!(name_from_nickname(""), "peer");
        assert!(is_valid_name(&name_from_nickname(&"é".repeat(100))));
    }

    #[test]
    fn lookalikes_are_confusable() {
        for (a, b) in [
            ("ada", "ada"),
            ("ada", "\u{430}da"),       // Cyrillic a
            ("ada", "\u{430}d\u{430}"), // Cyrillic a twice
            ("ada", "Ada"),             // case
            ("ada", "ADA"),
            ("ada", "ada\u{200b}"),              // zero-width space
            ("ada", "a\u{200d}da"),              // zero-width joiner
            ("ada", "\u{ff41}\u{ff44}\u{ff41}"), // full-width
            ("bob", "b\u{43e}b"),                // Cyrillic o
            ("paypal", "p\u{430}yp\u{430}l"),
            ("Ian", "\u{2160}an"), // Roman numeral one
            ("ian", "\u{2160}an"),
            ("all", "a11"), // digit one for ell
            ("rn", "m"),
        ] {
            assert!(confusable(a, b), "{a:?} vs {b:?}");
            assert!(confusable(b, a), "{b:?} vs {a:?}");
        }
        for (a, b) in [
            ("ada", "adam"),
            ("bob", "rob"),
            ("ada", "peer-ada"),
            ("carol", "caro"),
        ] {
            assert!(!confusable(a, b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn suspicions() {
        let pinned = ["ada", "bob"];
        let of = |nick: &str| Suspicion::of(nick, pinned.iter().copied());
        assert_eq!(of("carol"), None);
        assert_eq!(of("Jürgen"), None);
        assert_eq!(
            of("\u{7530}\u{4e2d}\u{3055}\u{3093}"),
            None,
            "Han + Hiragana is one script (Jpan)"
        );
        assert_eq!(of("\u{418}\u{432}\u{430}\u{43d}"), None, "all Cyrillic");
        assert_eq!(of("ada"), Some(Suspicion::LooksLike("ada".into())));
        assert_eq!(of("\u{430}da"), Some(Suspicion::LooksLike("ada".into())));
        assert_eq!(of("BOB"), Some(Suspicion::LooksLike("bob".into())));
        assert_eq!(of("b\u{43e}b"), Some(Suspicion::LooksLike("bob".into())));
        // Invisible characters become '_' in the name ("ada_"), but the
        // nickname itself is what a reader sees.
        assert_eq!(of("ada\u{200b}"), Some(Suspicion::LooksLike("ada".into())));
        assert_eq!(of("eve\u{200b}"), Some(Suspicion::Invisible));
        assert_eq!(of("e\u{202e}ve"), Some(Suspicion::Invisible));
        assert_eq!(of("p\u{430}ypal"), Some(Suspicion::MixedScripts));
    }

    #[test]
    fn fingerprint_names_are_valid_and_distinct() {
        let a = Fingerprint::of_spki_der(b"a");
        let b = Fingerprint::of_spki_der(b"b");
        let name = name_from_fingerprint(&a);
        assert!(is_valid_name(&name), "{name}");
        assert!(name.starts_with("peer-") && name.len() == 5 + FINGERPRINT_NAME_CHARS);
        assert_ne!(name, name_from_fingerprint(&b));
        let encoded = a.to_string();
        let start: String = encoded[7..]
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(3)
            .collect();
        assert!(name[5..].starts_with(&start));
    }
}
