//! Colour, as the user asked for it: `--color auto|always|never`, and the
//! `NO_COLOR` convention (<https://no-color.org>) for `auto`.
//!
//! Colour is decoration only: every message reads the same without it.

use std::io::IsTerminal;
use std::sync::OnceLock;

use crate::cli::ColorChoice;

static STDERR_COLOR: OnceLock<bool> = OnceLock::new();

/// Whether `auto` means colour: a terminal, and `NO_COLOR` unset or empty.
fn auto(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Decides, once per process, whether standard error gets colour.
pub fn init(choice: ColorChoice) {
    let on = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => auto(std::io::stderr().is_terminal()),
    };
    let _ = STDERR_COLOR.set(on);
}

/// Whether standard error gets colour (off until [`init`] says otherwise).
pub fn stderr_color() -> bool {
    STDERR_COLOR.get().copied().unwrap_or(false)
}

/// The same choice for clap's own help and error output.
pub fn clap_choice(choice: ColorChoice) -> clap::ColorChoice {
    match choice {
        ColorChoice::Always => clap::ColorChoice::Always,
        ColorChoice::Never => clap::ColorChoice::Never,
        ColorChoice::Auto if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) => {
            clap::ColorChoice::Never
        }
        ColorChoice::Auto => clap::ColorChoice::Auto,
    }
}

/// `text` in bold red on standard error, when colour is on: for warnings
/// and the one fatal error.
pub fn alarm(text: &str) -> String {
    paint(text, "1;31")
}

/// `text` in bold, when colour is on.
pub fn strong(text: &str) -> String {
    paint(text, "1")
}

fn paint(text: &str, sgr: &str) -> String {
    if stderr_color() {
        // Each line is painted on its own, so a line never starts mid-colour.
        text.split('\n')
            .map(|line| format!("\x1b[{sgr}m{line}\x1b[0m"))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_is_plain_text() {
        // STDERR_COLOR is unset in unit tests: nothing is painted.
        assert_eq!(alarm("a\nb"), "a\nb");
        assert!(!auto(false));
    }
}
