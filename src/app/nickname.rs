//! The nickname announced to peers: by default the account name, chosen
//! (shown, and changeable) at `chat init`, kept in config.toml.

use std::io::{self, BufRead, IsTerminal, Write};

use super::Context;
use crate::error::Error;
use crate::home::Home;
use crate::sanitize;
use crate::wire::handshake::is_valid_nickname;

/// The account's name, as a nickname: `$USER`, else `$LOGNAME`, else the
/// password database's name for our user id; `None` if none is a valid
/// nickname.
pub(super) fn account_name() -> Option<String> {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| is_valid_nickname(name));
    from_env.or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::Uid::current())
            .ok()
            .flatten()
            .map(|user| user.name)
            .filter(|name| is_valid_nickname(name))
    })
}

/// The nickname used when neither `--name` nor config.toml gives one.
pub(super) fn default_nickname() -> String {
    account_name().unwrap_or_else(|| "anonymous".into())
}

/// Checks a nickname typed by the user.
pub(super) fn check(nickname: &str) -> Result<(), Error> {
    if is_valid_nickname(nickname) {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "invalid nickname {:?}: use 1 to 64 bytes of text without control characters",
            sanitize::one_line(nickname)
        )))
    }
}

/// At `chat init`: the nickname in force (config.toml's, else the account
/// name), replaced by `--name`, or on a terminal by what the user types at
/// the prompt (empty keeps it). Returns the choice and whether it differs
/// from the one in force (and so must be saved).
pub(super) fn choose_at_init(
    context: &Context,
    given: Option<&str>,
) -> Result<(String, bool), Error> {
    let current = context.home.config()?.name.unwrap_or_else(default_nickname);
    let chosen = match given {
        Some(name) => name.to_string(),
        None if io::stdin().is_terminal() && io::stderr().is_terminal() => {
            let mut stderr = io::stderr().lock();
            write!(
                stderr,
                "Nickname announced to peers [{}]: ",
                sanitize::one_line(&current)
            )
            .and_then(|()| stderr.flush())
            .map_err(Error::io("asking for the nickname"))?;
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(Error::io("reading the nickname"))?;
            match line.trim() {
                "" => current.clone(),
                typed => typed.to_string(),
            }
        }
        None => current.clone(),
    };
    check(&chosen)?;
    let changed = chosen != current;
    Ok((chosen, changed))
}

/// Writes `name = NICK` into config.toml, keeping the rest of the file (its
/// comments and tables) as it is.
pub(super) fn save(home: &Home, nickname: &str) -> Result<(), Error> {
    let path = home.config_path();
    // Read through the same checks as any reading of the file.
    home.config()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            "# chat's settings; see docs/FILES.md, \"config.toml\".\n".into()
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
    };
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    document["name"] = toml_edit::value(nickname);
    crate::files::write_atomically(&path, document.to_string().as_bytes())
        .map_err(Error::io(format!("writing {}", path.display())))
}
