//! Fitting the shell: completion scripts and the manual page, both generated
//! from the same clap definitions as the command line itself.

use clap::CommandFactory;

use super::print_stdout;
use crate::cli::Cli;
use crate::error::{
    EXIT_KEY_CHANGED, EXIT_LOCAL, EXIT_NETWORK, EXIT_OK, EXIT_UNDELIVERED, EXIT_UNTRUSTED,
    EXIT_USAGE, Error,
};

/// The exit codes, as the README's table gives them.
const EXIT_CODES: [(u8, &str); 7] = [
    (
        EXIT_OK,
        "Success; for send, and for connect and serve --once without a terminal: everything sent was delivered.",
    ),
    (
        EXIT_LOCAL,
        "A problem with local files, input or the environment; the message names the file and the fix.",
    ),
    (EXIT_USAGE, "The command line could not be parsed."),
    (
        EXIT_NETWORK,
        "The connection could not be made or failed: unknown host, refused, timed out, not a chat peer, other protocol version, busy, cut, or tampered with.",
    ),
    (
        EXIT_UNTRUSTED,
        "Trust refused: the peer's key is unknown and not accepted (--strict, --expect, or no terminal), or the peer refused ours.",
    ),
    (EXIT_KEY_CHANGED, "A pinned peer presented a different key."),
    (
        EXIT_UNDELIVERED,
        "The conversation ended but some messages were not delivered.",
    ),
];

/// `chat completions SHELL`: the completion script on standard output.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "chat", &mut script);
    print_stdout(&String::from_utf8_lossy(&script))
}

/// One subcommand as a section of the page (its own subcommands as further
/// sections): synopsis, description and options.
fn render_subcommand(page: &mut Vec<u8>, sub: &clap::Command, parent: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = format!("{parent} {}", sub.get_name());
    writeln!(page, ".SH \"{}\"", path.to_uppercase())?;
    let man = clap_mangen::Man::new(sub.clone().bin_name(path.clone()));
    let mut part = Vec::new();
    man.render_synopsis_section(&mut part)?;
    man.render_description_section(&mut part)?;
    man.render_options_section(&mut part)?;
    // The subcommand's own sections become subsections of its section.
    page.extend_from_slice(
        String::from_utf8_lossy(&part)
            .replace(".SH ", ".SS ")
            .as_bytes(),
    );
    for inner in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_subcommand(page, inner, &path)?;
    }
    Ok(())
}

/// `chat man`: the manual page, `chat(1)`, in roff on standard output. The
/// subcommands are sections of the one page, as in git's short pages.
pub(super) fn man() -> Result<(), Error> {
    let command = Cli::command();
    let mut page = Vec::new();
    let render = |page: &mut Vec<u8>| -> std::io::Result<()> {
        let man = clap_mangen::Man::new(command.clone());
        man.render_title(page)?;
        man.render_name_section(page)?;
        man.render_synopsis_section(page)?;
        man.render_description_section(page)?;
        man.render_options_section(page)?;
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            render_subcommand(page, sub, "chat")?;
        }
        man.render_version_section(page)?;
        writeln!(page, ".SH FILES")?;
        writeln!(
            page,
            "The state folder (\\fB--home\\fR, \\fBCHAT_HOME\\fR, else ~/.config/chat) holds identity.pem, known_peers.toml and config.toml; see docs/FILES.md."
        )?;
        writeln!(page, ".SH \"EXIT STATUS\"")?;
        for (code, meaning) in EXIT_CODES {
            writeln!(page, ".TP\n{code}\n{meaning}")?;
        }
        writeln!(page, ".SH ENVIRONMENT")?;
        writeln!(
            page,
            ".TP\nCHAT_HOME\nThe state folder, when \\fB--home\\fR is not given."
        )?;
        writeln!(
            page,
            ".TP\nNO_COLOR\nWhen set and not empty, no colour (unless \\fB--color always\\fR)."
        )?;
        Ok(())
    };
    use std::io::Write as _;
    render(&mut page).map_err(Error::io("writing the manual page"))?;
    print_stdout(&String::from_utf8_lossy(&page))
}
