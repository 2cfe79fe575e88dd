//! The relay room (`docs/PROTOCOL.md`, "Relay", room derivation): a server
//! that meets its peers through a relay keeps a 32-byte room secret R and
//! tells the relay only `SHA-256("chat v2 relay room" || R)`, so the relay
//! learns a stable name for the room but never R, which the invite carries.

use sha2::{Digest, Sha256};

use crate::wire::relay::{ROOM_LEN, RoomId};

/// The label hashed before the room secret.
pub const ROOM_LABEL: &[u8] = b"chat v2 relay room";

/// Length of a room secret.
pub const ROOM_SECRET_LEN: usize = 32;

/// A server's room secret R. Zeroized on drop; `Debug` hides it.
#[derive(Clone)]
pub struct RoomSecret([u8; ROOM_SECRET_LEN]);
super::zeroize_on_drop!(RoomSecret { 0 });

impl RoomSecret {
    /// The secret with these bytes (draw them from a CSPRNG).
    pub fn from_bytes(bytes: [u8; ROOM_SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes, for the invite and the state folder.
    pub fn as_bytes(&self) -> &[u8; ROOM_SECRET_LEN] {
        &self.0
    }

    /// The room id a client sends to the relay for this secret.
    pub fn room_id(&self) -> RoomId {
        let digest: [u8; ROOM_LEN] = Sha256::new()
            .chain_update(ROOM_LABEL)
            .chain_update(self.0)
            .finalize()
            .into();
        RoomId::from_bytes(digest)
    }
}

impl std::fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::relay::{Answer, Request, Role};

    /// `docs/vectors/relay.toml`, which an implementation in another
    /// language checks itself against.
    fn vectors() -> toml::Table {
        include_str!("../../docs/vectors/relay.toml")
            .parse()
            .expect("relay.toml is TOML")
    }

    fn bytes<const N: usize>(value: &toml::Value) -> [u8; N] {
        hex::decode(value.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn room_ids_match_the_vectors() {
        let vectors = vectors();
        let room = vectors["room"].as_table().unwrap();
        assert_eq!(room["label"].as_str().unwrap().as_bytes(), ROOM_LABEL);
        let mut cases = vec![room.clone()];
        cases.extend(
            room["more"]
                .as_array()
                .unwrap()
                .iter()
                .map(|case| case.as_table().unwrap().clone()),
        );
        for case in cases {
            let secret = RoomSecret::from_bytes(bytes(&case["secret"]));
            assert_eq!(secret.room_id().as_bytes(), &bytes(&case["room_id"]));
        }
    }

    #[test]
    fn lines_match_the_vectors() {
        let vectors = vectors();
        let room = RoomSecret::from_bytes(bytes(&vectors["room"]["secret"])).room_id();
        for case in vectors["request"].as_array().unwrap() {
            let role = match case["role"].as_str().unwrap() {
                "serve" => Role::Serve,
                "connect" => Role::Connect,
                other => panic!("unknown role {other}"),
            };
            let request = Request {
                role,
                room,
                side: crate::wire::relay::Side::from_bytes(bytes(&case["side"])),
            };
            let line = case["line"].as_str().unwrap();
            assert_eq!(request.to_line(), line);
            assert_eq!(Request::parse(line.as_bytes()), Ok(request));
        }
        for case in vectors["bad"].as_array().unwrap() {
            let line = case["line"].as_str().unwrap().as_bytes();
            assert!(
                !matches!(
                    crate::wire::relay::scan(line),
                    crate::wire::relay::Scan::Line(_) | crate::wire::relay::Scan::Incomplete
                ),
                "{}",
                case["why"]
            );
        }
        let answers = vectors["answers"].as_table().unwrap();
        assert_eq!(answers.len(), Answer::ALL.len());
        for answer in Answer::ALL {
            assert_eq!(
                answers[answer.word()].as_str().unwrap().as_bytes(),
                answer.line()
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let secret = RoomSecret::from_bytes([0x41; 32]);
        assert_eq!(format!("{secret:?}"), "RoomSecret(..)");
    }
}
