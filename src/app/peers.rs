//! `chat peers list|add|forget`.

use super::{Context, print_stdout};
use crate::cli::PeersCommand;
use crate::error::Error;
use crate::trust::{KnownPeers, NewPeer, TrustError};

/// Runs one `chat peers` subcommand.
pub(super) fn run(context: &Context, command: &PeersCommand) -> Result<(), Error> {
    let path = context.home.known_peers_path();
    match command {
        PeersCommand::List => {
            let store = KnownPeers::load(&path)?;
            if store.peers().is_empty() {
                eprintln!(
                    "No known peers yet ({} is empty or missing).",
                    path.display()
                );
                return Ok(());
            }
            print_stdout(&table(&store))
        }
        PeersCommand::Add {
            name,
            fingerprint,
            address,
            comment,
        } => {
            context.home.create()?;
            let new = NewPeer {
                name: name.clone(),
                fingerprint: *fingerprint,
                address: address.clone(),
                comment: comment.clone(),
            };
            KnownPeers::add(&path, &new)?;
            eprintln!("Pinned {name} ({fingerprint}) in {}.", path.display());
            Ok(())
        }
        PeersCommand::Forget { name } => {
            let removed = KnownPeers::forget(&path, name).map_err(|e| match e {
                TrustError::UnknownName(name) => Error::Input(format!(
                    "no known peer is named {name:?} in {} (see `{}`)",
                    path.display(),
                    context.home.command(&["peers", "list"])
                )),
                e => e.into(),
            })?;
            eprintln!(
                "Forgot {} ({}); {} no longer pins it.",
                removed.name,
                removed.fingerprint,
                path.display()
            );
            Ok(())
        }
    }
}

/// The aligned table `chat peers list` prints.
fn table(store: &KnownPeers) -> String {
    let rows: Vec<[String; 4]> = store
        .peers()
        .iter()
        .map(|peer| {
            let addresses: Vec<String> = peer.addresses.iter().map(ToString::to_string).collect();
            [
                peer.name.clone(),
                peer.fingerprint.to_string(),
                peer.added.to_string(),
                if addresses.is_empty() {
                    "-".into()
                } else {
                    addresses.join(", ")
                },
            ]
        })
        .collect();
    let header = ["NAME", "FINGERPRINT", "ADDED", "ADDRESSES"].map(String::from);
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .collect()
}
