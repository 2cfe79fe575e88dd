//! `[hosts.NAME]` tables in `config.toml`: what `chat connect NAME` and
//! `chat send NAME` use, like a `Host` block in ssh_config. See
//! docs/FILES.md, "Names as addresses".
//!
//! Every field is checked when the file is read, so a mistake is reported
//! with its line before anything is dialled.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de};

use crate::address::{Address, DEFAULT_PORT};
use crate::crypto::Fingerprint;
use crate::trust::is_valid_name;
use crate::wire::handshake::is_valid_nickname;

/// The `[hosts.NAME]` tables, by NAME.
#[derive(Debug, Default, Clone)]
pub struct Hosts(BTreeMap<String, Host>);

/// One `[hosts.NAME]` table. Every field is optional; an option given on
/// the command line wins over the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// `address = "HOST[:PORT]"`: where to dial (default port 7777).
    #[serde(default, deserialize_with = "address")]
    pub address: Option<Address>,
    /// `fingerprint = "SHA256:..."`: the key expected there, as `--expect`.
    #[serde(default, deserialize_with = "fingerprint")]
    pub fingerprint: Option<Fingerprint>,
    /// `name = "NICK"`: the nickname to announce to this peer, as `--name`.
    #[serde(default, deserialize_with = "nickname")]
    pub name: Option<String>,
}

impl Hosts {
    /// The table for `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Host> {
        self.0.get(name)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tables = BTreeMap::<String, Host>::deserialize(deserializer)?;
        if let Some(bad) = tables.keys().find(|name| !is_valid_name(name)) {
            return Err(de::Error::custom(format!(
                "invalid host name {bad:?} in [hosts]: use letters, digits or - _ . @ + \
                 (the rules of a peer's local name)"
            )));
        }
        Ok(Self(tables))
    }
}

fn address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Address>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Address::parse_with_default_port(&text, DEFAULT_PORT)
        .map(Some)
        .map_err(de::Error::custom)
}

fn fingerprint<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Fingerprint>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(de::Error::custom)
}

fn nickname<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if !is_valid_nickname(&text) {
        return Err(de::Error::custom(
            "invalid nickname: use 1 to 64 bytes of text without control characters",
        ));
    }
    Ok(Some(text))
}
