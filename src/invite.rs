//! Invite lines (`docs/PROTOCOL.md`, "Invites"): everything a joiner needs
//! to find a server and know its key, on one line.
//!
//! ```text
//! chat://RELAYHOST:PORT/<R>?direct=ADDR,ADDR&once=<T>#SHA256:...
//! ```
//!
//! `R` is the server's 32-byte room secret and `T` an optional 32-byte
//! one-time secret, both in unpadded base64url (43 characters). `direct=`
//! lists addresses where the server also listens (absent with
//! `--relay-only`); `once=` is present only in one-time invites. The
//! fragment is the server's fingerprint exactly as `chat fingerprint`
//! prints it. Pure: text in, values out.

use std::fmt;
use std::str::FromStr;

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::address::Address;
use crate::crypto::Fingerprint;
use crate::crypto::room::{ROOM_SECRET_LEN, RoomSecret};

/// What every invite starts with.
pub const SCHEME: &str = "chat://";

/// The relay port an invite names when it gives none.
pub const DEFAULT_RELAY_PORT: u16 = 7778;

/// Most direct addresses an invite may list.
pub const MAX_DIRECT: usize = 8;

/// Longest invite accepted, in bytes.
pub const MAX_INVITE: usize = 1024;

/// Length of a one-time secret.
pub const ONCE_LEN: usize = 32;

/// A one-time invite's secret T. Zeroized on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct OnceSecret([u8; ONCE_LEN]);
crate::crypto::zeroize_on_drop!(OnceSecret { 0 });

impl OnceSecret {
    /// The secret with these bytes (draw them from a CSPRNG).
    pub fn from_bytes(bytes: [u8; ONCE_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ONCE_LEN] {
        &self.0
    }

    /// As it appears in an invite: unpadded base64url.
    pub fn encoded(&self) -> String {
        Base64UrlUnpadded::encode_string(&self.0)
    }

    /// Parses the invite's spelling of T.
    pub fn decode(text: &str) -> Option<Self> {
        decode_32(text).map(Self)
    }
}

impl fmt::Debug for OnceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnceSecret(..)")
    }
}

/// A parsed invite. `Debug` hides both secrets.
#[derive(Clone)]
pub struct Invite {
    /// The relay the server registers with.
    pub relay: Address,
    /// The server's room secret R.
    pub room: RoomSecret,
    /// Where the server also listens directly.
    pub direct: Vec<Address>,
    /// The one-time secret T, in a one-time invite.
    pub once: Option<OnceSecret>,
    /// The server's key.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("relay", &self.relay)
            .field("direct", &self.direct)
            .field("once", &self.once.is_some())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Invite {
    /// The same invite without its one-time secret: what is kept as a
    /// contact's address.
    pub fn reusable(&self) -> Invite {
        Invite {
            once: None,
            ..self.clone()
        }
    }
}

/// Why a text is not an invite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed invite: {0} (an invite looks like chat://HOST:PORT/ROOM?direct=...#SHA256:...)")]
pub struct ParseInviteError(&'static str);

/// Whether `text` is meant as an invite (rather than an address or name).
pub fn looks_like_invite(text: &str) -> bool {
    text.trim_start().starts_with(SCHEME)
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 43 {
        return None;
    }
    let mut out = [0u8; 32];
    match Base64UrlUnpadded::decode(text, &mut out) {
        Ok(decoded) if decoded.len() == 32 => Some(out),
        _ => None,
    }
}

impl FromStr for Invite {
    type Err = ParseInviteError;

    /// Parses exactly the form [`Display`](fmt::Display) writes, with
    /// surrounding whitespace ignored. Query parameters may come in either
    /// order, each at most once; anything unknown is refused.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() > MAX_INVITE {
            return Err(ParseInviteError("longer than 1024 bytes"));
        }
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or(ParseInviteError("it must start with chat://"))?;
        let (rest, fingerprint) = rest.split_once('#').ok_or(ParseInviteError(
            "the server's fingerprint (#SHA256:...) is missing",
        ))?;
        let fingerprint: Fingerprint = fingerprint
            .parse()
            .map_err(|_| ParseInviteError("the fingerprint after # is not SHA256:..."))?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (relay, room) = rest
            .split_once('/')
            .ok_or(ParseInviteError("the room (/ROOM) is missing"))?;
        let relay = Address::parse_with_default_port(relay, DEFAULT_RELAY_PORT)
            .map_err(|_| ParseInviteError("the relay is not HOST:PORT"))?;
        let room = decode_32(room)
            .map(RoomSecret::from_bytes)
            .ok_or(ParseInviteError(
                "the room is not 43 characters of base64url",
            ))?;
        let mut direct = None;
        let mut once = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (key, value) = pair
                .split_once('=')
                .ok_or(ParseInviteError("a parameter without ="))?;
            match key {
                "direct" if direct.is_none() => {
                    let list = value
                        .split(',')
                        .map(|a| Address::parse_with_default_port(a, crate::address::DEFAULT_PORT))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| ParseInviteError("a direct address is not HOST:PORT"))?;
                    if list.len() > MAX_DIRECT {
                        return Err(ParseInviteError("more than 8 direct addresses"));
                    }
                    direct = Some(list);
                }
                "once" if once.is_none() => {
                    once = Some(OnceSecret::decode(value).ok_or(ParseInviteError(
                        "the one-time secret is not 43 characters of base64url",
                    ))?);
                }
                "direct" | "once" => return Err(ParseInviteError("a parameter given twice")),
                _ => return Err(ParseInviteError("an unknown parameter")),
            }
        }
        Ok(Invite {
            relay,
            room,
            direct: direct.unwrap_or_default(),
            once,
            fingerprint,
        })
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let room: &[u8; ROOM_SECRET_LEN] = self.room.as_bytes();
        write!(
            f,
            "{SCHEME}{}/{}",
            self.relay,
            Base64UrlUnpadded::encode_string(room)
        )?;
        let mut separator = '?';
        if !self.direct.is_empty() {
            let list: Vec<String> = self.direct.iter().map(ToString::to_string).collect();
            write!(f, "{separator}direct={}", list.join(","))?;
            separator = '&';
        }
        if let Some(once) = &self.once {
            write!(f, "{separator}once={}", once.encoded())?;
        }
        write!(f, "#{}", self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Invite {
        Invite {
            relay: "relay.example:7778".parse().unwrap(),
            room: RoomSecret::from_bytes([7; 32]),
            direct: vec![
                "192.0.2.1:7777".parse().unwrap(),
                "[::1]:7000".parse().unwrap(),
            ],
            once: None,
            fingerprint: Fingerprint::of_spki_der(b"key"),
        }
    }

    #[test]
    fn round_trips() {
        let invite = sample();
        let text = invite.to_string();
        assert!(
            text.starts_with("chat://relay.example:7778/BwcHBwcH"),
            "{text}"
        );
        assert!(
            text.contains("?direct=192.0.2.1:7777,[::1]:7000#SHA256:"),
            "{text}"
        );
        let back: Invite = text.parse().unwrap();
        assert_eq!(back.to_string(), text);
        let mut once = sample();
        once.direct.clear();
        once.once = Some(OnceSecret::from_bytes([0xfb; 32]));
        let text = once.to_string();
        assert!(text.contains("?once=-_v7"), "{text}");
        let back: Invite = text.parse().unwrap();
        assert_eq!(back.once.as_ref().unwrap().as_bytes(), &[0xfb; 32]);
        assert!(back.direct.is_empty());
        assert_eq!(back.reusable().to_string().find("once"), None);
    }

    #[test]
    fn fingerprint_is_as_chat_fingerprint_prints_it() {
        let invite = sample();
        let text = invite.to_string();
        let fragment = text.split_once('#').unwrap().1;
        assert_eq!(fragment, invite.fingerprint.to_string());
    }

    #[test]
    fn refuses_malformed() {
        let good = sample().to_string();
        let room = good
            .split('/')
            .nth(3)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string();
        for bad in [
            "".to_string(),
            good.replace("chat://", "http://"),
            good.split('#').next().unwrap().to_string(),
            good.replace("#SHA256:", "#MD5:"),
            good.replace(&room, &room[1..]),
            good.replace("direct=", "direct=nope:x,"),
            good.replace("?direct=", "?colour=red&direct="),
            good.replace("?direct=", "?direct=a:1&direct="),
            format!("{good}{}", "x".repeat(1100)),
        ] {
            assert!(bad.parse::<Invite>().is_err(), "accepted {bad:?}");
        }
        assert!(format!("  {good}\n").parse::<Invite>().is_ok());
    }

    /// The line of `docs/vectors/invite.toml`.
    #[test]
    fn the_vector_line_parses_to_its_parts() {
        let vectors: toml::Table = include_str!("../docs/vectors/invite.toml").parse().unwrap();
        let line = vectors["line"].as_table().unwrap();
        let text = line["text"].as_str().unwrap();
        let invite: Invite = text.parse().unwrap();
        assert_eq!(invite.relay.to_string(), line["relay"].as_str().unwrap());
        assert_eq!(
            hex::encode(invite.room.as_bytes()),
            line["room_secret"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(invite.once.as_ref().unwrap().as_bytes()),
            line["once"].as_str().unwrap()
        );
        assert_eq!(invite.direct[0].to_string(), "192.0.2.1:7777");
        assert_eq!(invite.to_string(), text);
    }

    #[test]
    fn debug_hides_secrets() {
        let mut invite = sample();
        invite.once = Some(OnceSecret::from_bytes([1; 32]));
        let shown = format!("{invite:?}");
        assert!(
            !shown.contains("BwcH") && !shown.contains("AQEB"),
            "{shown}"
        );
    }
}
