//! `chat init` and `chat fingerprint`.

use std::io::{self, IsTerminal};
use std::time::Instant;

use zeroize::Zeroizing;

use super::{Context, print_stdout};
use crate::cli::{FingerprintArgs, InitArgs};
use crate::crypto::PrivateKey;
use crate::error::Error;
use crate::files::{Problem, UnsafePath};
use crate::identity::{self, IdentityError};

/// `chat init`: generate and save a new identity.
pub(super) fn init(context: &Context, args: &InitArgs) -> Result<(), Error> {
    let path = context.home.identity_path();
    if !args.force {
        if path.exists() {
            return Err(IdentityError::Exists { path }.into());
        }
        if let Ok(target) = std::fs::read_link(&path) {
            // A link that leads nowhere: the key would be created through it.
            return Err(IdentityError::Insecure(UnsafePath {
                path,
                problem: Problem::Link { target },
            })
            .into());
        }
    }
    let (nickname, changed) = super::nickname::choose_at_init(context, args.name.as_deref())?;
    let passphrase = new_passphrase(context)?;
    context.home.create()?;
    eprintln!("Generating a {}-bit RSA identity key...", args.bits);
    let started = Instant::now();
    let mut rng = rand::rng();
    let key =
        PrivateKey::generate(&mut rng, args.bits).map_err(|source| IdentityError::Invalid {
            path: path.clone(),
            source,
        })?;
    let elapsed = started.elapsed();
    let backup = identity::save(
        &path,
        &key,
        passphrase.as_deref().map(|p| p.as_str()),
        args.force,
        &mut rng,
    )?;
    if let Some(backup) = backup {
        eprintln!("The previous key is kept in {}.", backup.display());
    }
    eprintln!(
        "Saved to {} ({}), generated in {:.2} s. Your fingerprint:",
        path.display(),
        if passphrase.is_some() {
            "protected by a passphrase"
        } else {
            "no passphrase"
        },
        elapsed.as_secs_f64()
    );
    print_stdout(&format!("{}\n", key.public().fingerprint()))?;
    if changed {
        super::nickname::save(&context.home, &nickname)?;
    }
    eprintln!(
        "Your nickname, announced to peers, is {:?}{}; change it with name = \"...\" in {}, \
         or --name NICK on a command.",
        crate::sanitize::one_line(&nickname),
        if changed {
            " (saved in config.toml)"
        } else {
            ""
        },
        context.home.config_path().display(),
    );
    Ok(())
}

/// The passphrase for a new key: from `--passphrase-file`, or asked twice on a
/// terminal (empty for none), or none when not on a terminal.
fn new_passphrase(context: &Context) -> Result<Option<Zeroizing<String>>, Error> {
    if let Some(file) = &context.cli.passphrase_file {
        return Ok(Some(identity::read_passphrase_file(file)?));
    }
    if !io::stdin().is_terminal() {
        return Ok(None);
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(Error::io("reading the passphrase from the terminal"))
    };
    let first = ask("Passphrase for the new key (empty for none): ")?;
    if first.is_empty() {
        return Ok(None);
    }
    let second = ask("Same passphrase again: ")?;
    if first != second {
        return Err(IdentityError::Passphrase(
            "the two passphrases differ; nothing was written".into(),
        )
        .into());
    }
    Ok(Some(first))
}

/// `chat fingerprint`: print the identity's fingerprint or public key.
pub(super) fn fingerprint(context: &Context, args: &FingerprintArgs) -> Result<(), Error> {
    // identity.pub answers without the passphrase (it is checked against
    // the key whenever the key is loaded).
    let path = context.home.identity_path();
    let public = if context.cli.passphrase_file.is_some() {
        // A passphrase given is used: the key is loaded and checked.
        identity::load(&path, || context.identity_passphrase())?
            .public()
            .clone()
    } else {
        identity::load_public(&path, || context.identity_passphrase())?
    };
    if args.pem {
        print_stdout(&public.to_pem())
    } else {
        print_stdout(&format!("{}\n", public.fingerprint()))
    }
}
