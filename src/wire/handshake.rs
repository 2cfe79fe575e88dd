//! Bodies of the handshake messages (`docs/PROTOCOL.md`, "Handshake").
//! Each `encode` gives the body; each `decode` takes a body and accepts
//! exactly one encoding.

use super::{Reader, put_opaque8, put_opaque16};
use crate::protocol::{MAGIC, MAX_NICKNAME_LEN, NONCE_LEN, ProtocolError, RefusalReason, VERSION};

/// ClientHello: `magic[4] | version: u8 | nonce_i[32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Protocol version the initiator speaks.
    pub version: u8,
    /// Initiator's fresh random nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl ClientHello {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + 1 + NONCE_LEN);
        body.extend_from_slice(&MAGIC);
        body.push(self.version);
        body.extend_from_slice(&self.nonce);
        body
    }

    /// Decodes a body. The magic and version are checked first, so that a
    /// later version may lay out the rest differently and still be refused
    /// with a clear reason. Being the first frame, any other defect means
    /// the other end does not speak the protocol (`docs/PROTOCOL.md`, 5.1):
    /// [`ProtocolError::NotChat`], like a bad magic.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("ClientHello", body);
        if r.take(4).ok() != Some(&MAGIC[..]) {
            return Err(ProtocolError::NotChat);
        }
        let version = r.u8().map_err(|_| ProtocolError::NotChat)?;
        if version != VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                theirs: version,
                ours: VERSION,
            });
        }
        let nonce = r.array().map_err(|_| ProtocolError::NotChat)?;
        r.finish().map_err(|_| ProtocolError::NotChat)?;
        Ok(Self { version, nonce })
    }
}

/// ServerHello: `version: u8 | nonce_r[32] | transient: opaque16`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello<'a> {
    /// Protocol version (the one the initiator asked for).
    pub version: u8,
    /// Responder's fresh random nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Responder's transient key, SubjectPublicKeyInfo DER.
    pub transient: &'a [u8],
}

impl<'a> ServerHello<'a> {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(1 + NONCE_LEN + 2 + self.transient.len());
        body.push(self.version);
        body.extend_from_slice(&self.nonce);
        put_opaque16(&mut body, self.transient);
        body
    }

    /// Decodes a body. It is the first frame the initiator receives, so any
    /// defect, a version other than ours included (a responder that does
    /// not speak it answers with a Refusal instead), means the other end
    /// does not speak the protocol (`docs/PROTOCOL.md`, 5.2):
    /// [`ProtocolError::NotChat`]. The transient key is checked by the
    /// caller.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let not_chat = |_| ProtocolError::NotChat;
        let mut r = Reader::new("ServerHello", body);
        let version = r.u8().map_err(not_chat)?;
        if version != VERSION {
            return Err(ProtocolError::NotChat);
        }
        let hello = Self {
            version,
            nonce: r.array().map_err(not_chat)?,
            transient: r.opaque16().map_err(not_chat)?,
        };
        r.finish().map_err(not_chat)?;
        Ok(hello)
    }
}

/// KeyTransport: `wrapped: opaque16`, the OAEP ciphertext of the session secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTransport<'a> {
    /// RSA-OAEP ciphertext, as long as the transient modulus.
    pub wrapped: &'a [u8],
}

impl<'a> KeyTransport<'a> {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + self.wrapped.len());
        put_opaque16(&mut body, self.wrapped);
        body
    }

    /// Decodes a body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("KeyTransport", body);
        let wrapped = r.opaque16()?;
        r.finish()?;
        Ok(Self { wrapped })
    }
}

/// ResponderAuth and InitiatorAuth: `signature: opaque16`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    /// RSA-PSS signature over the transcript hash, as long as the signer's modulus.
    pub signature: &'a [u8],
}

impl<'a> Auth<'a> {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + self.signature.len());
        put_opaque16(&mut body, self.signature);
        body
    }

    /// Decodes a body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("Auth", body);
        let signature = r.opaque16()?;
        r.finish()?;
        Ok(Self { signature })
    }
}

/// ResponderIdentity and InitiatorIdentity: `identity: opaque16 | nickname: opaque8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The sender's identity key, SubjectPublicKeyInfo DER.
    pub identity: &'a [u8],
    /// The nickname the sender announces: 1 to 64 bytes of UTF-8 without
    /// control characters.
    pub nickname: &'a str,
}

impl<'a> Identity<'a> {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(3 + self.identity.len() + self.nickname.len());
        put_opaque16(&mut body, self.identity);
        put_opaque8(&mut body, self.nickname.as_bytes());
        body
    }

    /// Decodes a body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("Identity", body);
        let identity = r.opaque16()?;
        let nickname = r.opaque8()?;
        r.finish()?;
        let nickname = std::str::from_utf8(nickname).map_err(|_| ProtocolError::Malformed {
            what: "Identity",
            problem: "nickname is not UTF-8",
        })?;
        if !is_valid_nickname(nickname) {
            return Err(ProtocolError::Malformed {
                what: "Identity",
                problem: "nickname is empty, longer than 64 bytes, or has control characters",
            });
        }
        Ok(Self { identity, nickname })
    }
}

/// Whether a nickname may be sent: 1 to 64 bytes of UTF-8, no control characters.
pub fn is_valid_nickname(nickname: &str) -> bool {
    (1..=MAX_NICKNAME_LEN).contains(&nickname.len()) && !nickname.chars().any(char::is_control)
}

/// Refusal: `reason: u8 | version: u8`, the responder's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// The version the responder speaks.
    pub version: u8,
}

impl Refusal {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        vec![self.reason.code(), self.version]
    }

    /// Decodes a body. Like ServerHello, it comes as the initiator's first
    /// frame: a body of any length but 2 means the other end does not speak
    /// the protocol ([`ProtocolError::NotChat`]).
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let not_chat = |_| ProtocolError::NotChat;
        let mut r = Reader::new("Refusal", body);
        let refusal = Self {
            reason: RefusalReason::from_code(r.u8().map_err(not_chat)?),
            version: r.u8().map_err(not_chat)?,
        };
        r.finish().map_err(not_chat)?;
        Ok(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_checks_magic_then_version_then_length() {
        let hello = ClientHello {
            version: VERSION,
            nonce: [7; 32],
        };
        let body = hello.encode();
        assert_eq!(ClientHello::decode(&body).unwrap(), hello);
        // A version-1 hello (the same length) and a later one (perhaps
        // longer) are both version errors, naming both versions.
        let mut v1 = body.clone();
        v1[4] = 1;
        assert_eq!(
            ClientHello::decode(&v1).unwrap_err(),
            ProtocolError::UnsupportedVersion { theirs: 1, ours: 2 }
        );
        let mut v3 = body.clone();
        v3[4] = 3;
        v3.push(0);
        assert_eq!(
            ClientHello::decode(&v3).unwrap_err(),
            ProtocolError::UnsupportedVersion { theirs: 3, ours: 2 }
        );
        assert_eq!(
            ProtocolError::UnsupportedVersion { theirs: 1, ours: 2 }.to_string(),
            "the peer speaks only chat protocol version 1; this program speaks version 2"
        );
        assert_eq!(
            ClientHello::decode(b"GET / HTTP/1.1").unwrap_err(),
            ProtocolError::NotChat
        );
        // A version-2 hello of any length but 37 bytes: not a chat peer,
        // closed without an answer (5.1), as for a bad magic.
        assert_eq!(
            ClientHello::decode(&body[..body.len() - 1]).unwrap_err(),
            ProtocolError::NotChat
        );
        assert_eq!(
            ClientHello::decode(&[body.clone(), vec![0]].concat()).unwrap_err(),
            ProtocolError::NotChat
        );
    }

    /// The initiator's first frame: whatever is wrong with the layout of a
    /// ServerHello or a Refusal, the version of a ServerHello included, the
    /// other end does not speak the protocol (5.2, section 11).
    #[test]
    fn a_bad_server_hello_or_refusal_is_not_a_chat_peer() {
        let hello = ServerHello {
            version: VERSION,
            nonce: [1; 32],
            transient: &[3; 30],
        }
        .encode();
        let mut other_version = hello.clone();
        other_version[0] = 1;
        let refusal = Refusal {
            reason: RefusalReason::Busy,
            version: VERSION,
        }
        .encode();
        for (what, bad) in [
            ("version 1", other_version),
            ("truncated", hello[..hello.len() - 1].to_vec()),
            ("trailing byte", [hello.clone(), vec![0]].concat()),
            ("empty", Vec::new()),
        ] {
            assert_eq!(
                ServerHello::decode(&bad).unwrap_err(),
                ProtocolError::NotChat,
                "ServerHello {what}"
            );
        }
        for bad in [&refusal[..1], &[refusal.clone(), vec![0]].concat()[..]] {
            assert_eq!(Refusal::decode(bad).unwrap_err(), ProtocolError::NotChat);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        type Decodes = fn(&[u8]) -> bool;
        let bodies: Vec<(Decodes, Vec<u8>)> = vec![
            (
                |b| ServerHello::decode(b).is_ok(),
                ServerHello {
                    version: VERSION,
                    nonce: [1; 32],
                    transient: &[3; 30],
                }
                .encode(),
            ),
            (
                |b| KeyTransport::decode(b).is_ok(),
                KeyTransport { wrapped: &[4; 256] }.encode(),
            ),
            (
                |b| Auth::decode(b).is_ok(),
                Auth {
                    signature: &[5; 384],
                }
                .encode(),
            ),
            (
                |b| Identity::decode(b).is_ok(),
                Identity {
                    identity: &[6; 50],
                    nickname: "ada",
                }
                .encode(),
            ),
            (
                |b| Refusal::decode(b).is_ok(),
                Refusal {
                    reason: RefusalReason::Busy,
                    version: 1,
                }
                .encode(),
            ),
        ];
        for (decodes, body) in bodies {
            assert!(decodes(&body));
            for cut in 0..body.len() {
                assert!(!decodes(&body[..cut]), "accepted a truncation at {cut}");
            }
            assert!(
                !decodes(&[body.clone(), vec![0]].concat()),
                "accepted trailing bytes"
            );
        }
    }

    #[test]
    fn nicknames_are_checked() {
        for bad in ["", "a\u{1b}[2J", "tab\there", &"x".repeat(65)] {
            let body = Identity {
                identity: &[1],
                nickname: bad,
            }
            .encode();
            assert!(Identity::decode(&body).is_err(), "{bad:?}");
        }
        let mut not_utf8 = Identity {
            identity: &[1],
            nickname: "ab",
        }
        .encode();
        *not_utf8.last_mut().unwrap() = 0xff;
        assert!(Identity::decode(&not_utf8).is_err());
    }
}
