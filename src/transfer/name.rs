//! The name rules (`docs/PROTOCOL.md`, 9.3): which strings may name a file
//! or a folder that a receiver creates. An unsafe name is refused, never
//! rewritten, and the rules are the same on every system, so that an offer
//! is refused or accepted the same way wherever it lands. Every component
//! of a path in a folder send is checked the same way.

use std::fmt;

use unicode_normalization::is_nfc;

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
            Self::NotNfc => f.write_str("it is not in Unicode Normalization Form C"),
            Self::DeviceName(stem) => write!(f, "{stem} is a Windows device name"),
        }
    }
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
/// every rule, in the order of `docs/PROTOCOL.md` 9.3.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    for c in name.chars() {
        if c == '/' || c == '\\' {
            return Err(NameError::Separator(c));
        }
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            return Err(NameError::Control(c));
        }
        if is_bidi(c) {
            return Err(NameError::Bidi(c));
        }
        if is_invisible(c) {
            return Err(NameError::Invisible(c));
        }
        if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
            return Err(NameError::Reserved(c));
        }
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::EdgeWhitespace);
    }
    if name.ends_with('.') {
        return Err(NameError::TrailingDot);
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
            Err(NameError::NotNfc) => 10,
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
