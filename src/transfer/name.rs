//! The name rules (`docs/PROTOCOL.md`, 9.3): which strings may name a file
//! or a folder that a receiver creates. An unsafe name is refused, never
//! rewritten, and the rules are the same on every system, so that an offer
//! is refused or accepted the same way wherever it lands. Every component
//! of a path in a folder send is checked the same way.
//!
//! The rules are checked one after the other, so that a name that breaks
//! several is reported as breaking the lowest-numbered (as
//! `docs/vectors/names.toml` lists it). Rules 1 to 9 and 11 list their
//! characters here, needing no Unicode data; rule 10 admits only what
//! Unicode 14.0.0 assigns (`unicode14.rs`), for which the normal form that
//! `unicode-normalization` computes, with its newer data, is that of 14.0.0.

use std::fmt;

use unicode_normalization::is_nfc;

use super::unicode14;
use crate::protocol::MAX_NAME_LEN;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The empty string.
    Empty,
    /// Over 255 bytes of UTF-8.
    TooLong(usize),
    /// `.` or `..`.
    DotName,
    /// `/` or `\`: a path travels as separate components, never inside one.
    Separator(char),
    /// A control character (Unicode Cc), or a line or paragraph separator.
    Control(char),
    /// A character that reorders text (bidirectional controls).
    Bidi(char),
    /// A character that shows as nothing.
    Invisible(char),
    /// One of `< > : " | ? *`, which Windows cannot store (`:` also opens
    /// an NTFS alternate data stream).
    Reserved(char),
    /// White space at the start or the end, which a reader does not see.
    EdgeWhitespace,
    /// A final `.`, which Windows drops.
    TrailingDot,
    /// A code point that Unicode 14.0.0 does not assign (the version the
    /// protocol names: a newer character, a noncharacter, or none at all).
    Unassigned(char),
    /// Not in Unicode Normalization Form C.
    NotNfc,
    /// A Windows device name (CON, NUL, COM1, ...), whatever the extension.
    DeviceName(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the name is empty"),
            Self::TooLong(len) => {
                write!(f, "the name is {len} bytes long; at most 255 are allowed")
            }
            Self::DotName => f.write_str("`.` and `..` are not names"),
            Self::Separator(c) => write!(f, "it contains the path separator {c:?}"),
            Self::Control(c) => write!(f, "it contains the control character U+{:04X}", *c as u32),
            Self::Bidi(c) => write!(
                f,
                "it contains U+{:04X}, which reorders the text around it",
                *c as u32
            ),
            Self::Invisible(c) => {
                write!(f, "it contains the invisible character U+{:04X}", *c as u32)
            }
            Self::Reserved(c) => write!(f, "it contains {c:?}, which Windows does not allow"),
            Self::EdgeWhitespace => f.write_str("it starts or ends with white space"),
            Self::TrailingDot => f.write_str("it ends with a dot"),
            Self::Unassigned(c) => write!(
                f,
                "it contains U+{:04X}, which Unicode 14.0, the version the protocol names, \
                 does not assign",
                *c as u32
            ),
            Self::NotNfc => f.write_str("it is not in Unicode Normalization Form C"),
            Self::DeviceName(stem) => write!(f, "{stem} is a Windows device name"),
        }
    }
}

/// Control characters (rule 4): the Unicode general category Cc, which is
/// exactly these, and the line and paragraph separators.
fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\u{1F}' | '\u{7F}'..='\u{9F}' | '\u{2028}' | '\u{2029}')
}

/// White space (rule 8): the Unicode White_Space property, as the spec
/// lists it, so that it does not depend on a Unicode version.
fn is_white_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Bidirectional controls: they can make "exe.pdf" look like "fdp.exe".
fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters that show as nothing and have no job in a name: zero-width
/// space, word joiner and invisible operators, byte order mark, soft
/// hyphen. (The zero-width joiner and non-joiner are allowed: emoji and
/// Persian, among others, need them.)
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Windows device names, compared without case with the part of a name
/// before its first dot, trailing spaces removed.
const DEVICE_NAMES: [&str; 33] = [
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$", "COM0", "COM1", "COM2", "COM3",
    "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Checks one name (a file name, or one component of a path) against
/// every rule, in the order of `docs/PROTOCOL.md` 9.3: the error is the
/// lowest-numbered rule the name breaks, and within a rule about
/// characters, the first such character.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let first = |rule: fn(char) -> bool| name.chars().find(|&c| rule(c));
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    if let Some(c) = first(|c| c == '/' || c == '\\') {
        return Err(NameError::Separator(c));
    }
    if let Some(c) = first(is_control) {
        return Err(NameError::Control(c));
    }
    if let Some(c) = first(is_bidi) {
        return Err(NameError::Bidi(c));
    }
    if let Some(c) = first(is_invisible) {
        return Err(NameError::Invisible(c));
    }
    if let Some(c) = first(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')) {
        return Err(NameError::Reserved(c));
    }
    if name.starts_with(is_white_space) || name.ends_with(is_white_space) {
        return Err(NameError::EdgeWhitespace);
    }
    if name.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    if let Some(c) = first(|c| !unicode14::is_assigned(c)) {
        return Err(NameError::Unassigned(c));
    }
    if !is_nfc(name) {
        return Err(NameError::NotNfc);
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if DEVICE_NAMES.contains(&upper.as_str()) {
        return Err(NameError::DeviceName(stem.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule, table-driven: the name, and the error it must give.
    #[test]
    fn each_rule_refuses_what_it_should() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (&"a".repeat(256), NameError::TooLong(256)),
            (&"é".repeat(128), NameError::TooLong(256)),
            (".", NameError::DotName),
            ("..", NameError::DotName),
            ("a/b", NameError::Separator('/')),
            ("/etc", NameError::Separator('/')),
            ("..\\x", NameError::Separator('\\')),
            ("a\\b", NameError::Separator('\\')),
            ("tab\there", NameError::Control('\t')),
            ("new\nline", NameError::Control('\n')),
            ("esc\u{1b}[2J", NameError::Control('\u{1b}')),
            ("nul\0byte", NameError::Control('\0')),
            ("del\u{7f}", NameError::Control('\u{7f}')),
            ("c1\u{9b}31m", NameError::Control('\u{9b}')),
            ("line\u{2028}sep", NameError::Control('\u{2028}')),
            ("para\u{2029}sep", NameError::Control('\u{2029}')),
            ("report\u{202E}fdp.exe", NameError::Bidi('\u{202E}')),
            ("\u{2066}isolate", NameError::Bidi('\u{2066}')),
            ("mark\u{200F}", NameError::Bidi('\u{200F}')),
            ("arabic\u{061C}mark", NameError::Bidi('\u{061C}')),
            ("zero\u{200B}width", NameError::Invisible('\u{200B}')),
            ("\u{FEFF}bom", NameError::Invisible('\u{FEFF}')),
            ("soft\u{00AD}hyphen", NameError::Invisible('\u{00AD}')),
            ("word\u{2060}joiner", NameError::Invisible('\u{2060}')),
            ("a:b", NameError::Reserved(':')),
            ("file.txt:stream", NameError::Reserved(':')),
            ("C:", NameError::Reserved(':')),
            ("why?.txt", NameError::Reserved('?')),
            ("*", NameError::Reserved('*')),
            ("a<b>", NameError::Reserved('<')),
            ("say \"hi\"", NameError::Reserved('"')),
            ("pipe|", NameError::Reserved('|')),
            (" leading", NameError::EdgeWhitespace),
            ("trailing ", NameError::EdgeWhitespace),
            ("nbsp\u{00A0}", NameError::EdgeWhitespace),
            ("\u{3000}ideographic", NameError::EdgeWhitespace),
            ("trailing.", NameError::TrailingDot),
            ("...", NameError::TrailingDot),
            ("e\u{0301}te.txt", NameError::NotNfc),
            ("shaking \u{1FAE8}.png", NameError::Unassigned('\u{1FAE8}')),
            ("\u{0378}", NameError::Unassigned('\u{0378}')),
            ("non\u{FDD0}char", NameError::Unassigned('\u{FDD0}')),
            ("\u{10D50}\u{10D70}", NameError::Unassigned('\u{10D50}')),
            ("\u{212B}ngstrom", NameError::NotNfc),
            ("CON", NameError::DeviceName("CON".into())),
            ("con", NameError::DeviceName("con".into())),
            ("Nul.txt", NameError::DeviceName("Nul".into())),
            ("aux.tar.gz", NameError::DeviceName("aux".into())),
            ("NUL .txt", NameError::DeviceName("NUL".into())),
            ("COM1", NameError::DeviceName("COM1".into())),
            ("com0.log", NameError::DeviceName("com0".into())),
            ("LPT9.doc", NameError::DeviceName("LPT9".into())),
            ("COM¹", NameError::DeviceName("COM¹".into())),
            ("lpt³.txt", NameError::DeviceName("lpt³".into())),
            ("CONIN$", NameError::DeviceName("CONIN$".into())),
            ("conout$.x", NameError::DeviceName("conout$".into())),
            ("CLOCK$", NameError::DeviceName("CLOCK$".into())),
        ];
        for (name, expected) in cases {
            assert_eq!(
                check_name(name).as_ref(),
                Err(expected),
                "{name:?} should be refused as {expected:?}"
            );
        }
    }

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "report.pdf",
            "a",
            ".bashrc",
            ".hidden.tar.gz",
            "été.jpg",
            "日本語のファイル.txt",
            "my file (1).txt",
            "con-artist.txt",
            "CONSOLE",
            "COM10",
            "LPT",
            "auxiliary.md",
            "nul_",
            "👨\u{200D}👩\u{200D}👧.png",
            "می\u{200C}خواهم.txt",
            "a.b.c",
            "100%.txt",
            "[draft] #2 & more; 'quoted' {x} ~$ @=+,",
            &"a".repeat(255),
            &"é".repeat(127),
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?} was refused");
        }
    }

    /// The number of the rule of docs/PROTOCOL.md 9.3 that an error is.
    fn rule(result: Result<(), NameError>) -> i64 {
        match result {
            Ok(()) => 0,
            Err(NameError::Empty | NameError::TooLong(_)) => 1,
            Err(NameError::DotName) => 2,
            Err(NameError::Separator(_)) => 3,
            Err(NameError::Control(_)) => 4,
            Err(NameError::Bidi(_)) => 5,
            Err(NameError::Invisible(_)) => 6,
            Err(NameError::Reserved(_)) => 7,
            Err(NameError::EdgeWhitespace) => 8,
            Err(NameError::TrailingDot) => 9,
            Err(NameError::Unassigned(_) | NameError::NotNfc) => 10,
            Err(NameError::DeviceName(_)) => 11,
        }
    }

    /// `docs/vectors/names.toml`, which the independent Python check reads too.
    #[test]
    fn the_shared_name_vectors() {
        let file: toml::Table = include_str!("../../docs/vectors/names.toml")
            .parse()
            .unwrap();
        let names = file["name"].as_array().unwrap();
        assert!(names.len() > 50);
        for entry in names {
            let value = entry["value"].as_str().unwrap();
            let expected = entry["rule"].as_integer().unwrap();
            assert_eq!(rule(check_name(value)), expected, "{value:?}");
        }
    }

    /// A name that breaks several rules is reported as breaking the
    /// lowest-numbered of them, whatever the order of its characters (9.3).
    #[test]
    fn the_lowest_numbered_rule_is_the_one_reported() {
        for (name, expected) in [
            ("a:b\u{1}", NameError::Control('\u{1}')),
            ("a\u{202E}\\b", NameError::Separator('\\')),
            ("x*\u{200B}", NameError::Invisible('\u{200B}')),
            ("\u{85}x", NameError::Control('\u{85}')),
            ("..", NameError::DotName),
            ("\u{1FAE8}.", NameError::TrailingDot),
            ("?\u{1FAE8}", NameError::Reserved('?')),
        ] {
            assert_eq!(check_name(name), Err(expected), "{name:?}");
        }
    }

    /// The lines a digest of `names.toml` covers: for each code point that
    /// Unicode 14.0.0 assigns, in order, whose one-character string `map`
    /// changes, `XXXX>YYYY YYYY` in uppercase hexadecimal.
    fn mapping_digest(map: impl Fn(&str) -> String) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let one = c.to_string();
            let mapped = map(&one);
            if unicode14::is_assigned(c) && mapped != one {
                let to: Vec<String> = mapped
                    .chars()
                    .map(|m| format!("{:04X}", m as u32))
                    .collect();
                hash.update(format!("{:04X}>{}\n", c as u32, to.join(" ")));
            }
        }
        hex::encode(hash.finalize())
    }

    /// Rust's own Unicode data (the standard library's lowercase, and
    /// `unicode-normalization`'s NFC) gives, for every character Unicode
    /// 14.0.0 assigns, what 14.0.0 gives: the digests in `names.toml` were
    /// computed from 14.0.0 itself (9.3, "Unicode version").
    #[test]
    fn our_unicode_data_agrees_with_14_0_0_on_what_rule_10_admits() {
        use unicode_normalization::UnicodeNormalization;
        let file: toml::Table = include_str!("../../docs/vectors/names.toml")
            .parse()
            .unwrap();
        let unicode = file["unicode"].as_table().unwrap();
        assert_eq!(unicode["version"].as_str(), Some("14.0.0"));
        assert_eq!(
            mapping_digest(str::to_lowercase),
            unicode["lowercase_sha256"].as_str().unwrap(),
            "str::to_lowercase"
        );
        assert_eq!(
            mapping_digest(|s| s.nfc().collect()),
            unicode["nfc_sha256"].as_str().unwrap(),
            "NFC"
        );
    }

    #[test]
    fn errors_name_the_problem_without_echoing_controls() {
        let e = check_name("x\u{1b}y").unwrap_err();
        assert_eq!(e.to_string(), "it contains the control character U+001B");
        assert_eq!(
            check_name("a\u{202E}b").unwrap_err().to_string(),
            "it contains U+202E, which reorders the text around it"
        );
        assert_eq!(
            check_name("LPT1.txt").unwrap_err().to_string(),
            "LPT1 is a Windows device name"
        );
    }
}
