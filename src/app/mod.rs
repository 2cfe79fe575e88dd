//! What each command does: the edge where the pure core meets files and the terminal.

mod batch;
mod connect;
mod files;
mod inbox;
pub mod invite;
mod keys;
mod nickname;
pub mod output;
mod peer;
mod peers;
mod preview;
pub mod progress;
mod receive;
mod relay;
mod repl;
mod resolve;
mod routing;
mod send;
mod serve;
mod shell;
pub mod style;
pub mod trust_policy;

use std::io::{self, IsTerminal, Write};

use zeroize::Zeroizing;

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::home::Home;
use crate::identity::{self, IdentityError};

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), Error> {
    style::init(cli.color);
    match &cli.command {
        Command::Completions { shell } => return shell::completions(*shell),
        Command::Man => return shell::man(),
        // The relay keeps no state: it never looks for a state folder.
        Command::Relay(args) => return relay::relay(args),
        _ => {}
    }
    let home = Home::locate(cli.home.clone())?;
    let context = Context { home, cli: &cli };
    match &cli.command {
        Command::Init(args) => keys::init(&context, args),
        Command::Fingerprint(args) => keys::fingerprint(&context, args),
        Command::Peers(command) => peers::run(&context, command),
        Command::Serve(args) => serve::serve(&context, args),
        Command::Connect(args) => connect::connect(&context, args),
        Command::Send(args) => send::send(&context, args),
        Command::Invite(args) => invite::command(&context, args),
        Command::Completions { .. } | Command::Man | Command::Relay(_) => {
            unreachable!("handled above")
        }
    }
}

/// What every command needs: the state folder and the global options.
struct Context<'a> {
    home: Home,
    cli: &'a Cli,
}

impl Context<'_> {
    /// The passphrase for the identity key: from `--passphrase-file`, else
    /// asked on the terminal, else an error that says how to give it.
    fn identity_passphrase(&self) -> Result<Zeroizing<String>, IdentityError> {
        if let Some(file) = &self.cli.passphrase_file {
            return identity::read_passphrase_file(file);
        }
        let path = self.home.identity_path();
        if !io::stdin().is_terminal() {
            return Err(IdentityError::PassphraseUnavailable { path });
        }
        rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
            .map(Zeroizing::new)
            .map_err(|source| IdentityError::Io { path, source })
    }
}

/// Writes to standard output. A closed pipe (`chat peers list | head`) is not
/// an error: the reader has seen all it wanted.
fn print_stdout(text: &str) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to standard output")(e))
        }
        _ => Ok(()),
    }
}
