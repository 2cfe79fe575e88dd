//! The relay line protocol (`docs/PROTOCOL.md`, "Relay"): the one ASCII line
//! a client sends to a `chat relay`, and the one-line answers it gets. Pure:
//! bytes in, values out, for the relay and for its clients alike.
//!
//! A request is exactly
//! `chat-relay/1 ` (`serve` | `connect`) ` ` room ` ` side `\n`, where room is
//! 64 and side 16 lowercase hex digits: 101 bytes for `serve`, 103 for
//! `connect`. Nothing else is accepted: no other case, no CR, no extra
//! spaces, nothing after the LF.

use std::fmt;

/// What every request starts with, including the space after it.
pub const PREFIX: &str = "chat-relay/1 ";

/// The most bytes a relay reads while looking for the end of the request
/// line, LF included. A request is shorter (at most 103 bytes); anything
/// that reaches this length without an LF is refused.
pub const MAX_LINE: usize = 128;

/// The longest answer, LF included (`replaced\n`).
pub const MAX_ANSWER: usize = 9;

/// Length of a room id in bytes (64 hex digits on the line).
pub const ROOM_LEN: usize = 32;

/// Length of a side in bytes (16 hex digits on the line).
pub const SIDE_LEN: usize = 8;

/// The room a client asks to be paired in: SHA-256 over a fixed label and
/// the server's room secret (`crate::crypto::room`), never the secret
/// itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId([u8; ROOM_LEN]);

impl RoomId {
    /// The room with these bytes.
    pub const fn from_bytes(bytes: [u8; ROOM_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ROOM_LEN] {
        &self.0
    }
}

impl fmt::Debug for RoomId {
    /// Only a prefix: enough to tell rooms apart in a test failure, not
    /// the whole id (the relay never logs rooms).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({}..)", hex_lower(&self.0[..4]))
    }
}

/// A random value a client draws once per process, so that the relay can
/// tell a server's own renewed registration from another server's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Side([u8; SIDE_LEN]);

impl Side {
    /// The side with these bytes (draw them at random).
    pub const fn from_bytes(bytes: [u8; SIDE_LEN]) -> Self {
        Self(bytes)
    }

    /// The 8 bytes.
    pub fn as_bytes(&self) -> &[u8; SIDE_LEN] {
        &self.0
    }
}

/// Which end of a circuit a client wants to be.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// Waits for someone to connect: the chat responder.
    Serve,
    /// Joins the waiting `serve` of a room: the chat initiator.
    Connect,
}

impl Role {
    /// The word on the line.
    pub fn word(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Connect => "connect",
        }
    }
}

/// A client's request line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Request {
    /// `serve` or `connect`.
    pub role: Role,
    /// The room.
    pub room: RoomId,
    /// The client's side.
    pub side: Side,
}

/// Why a request line was refused. The relay answers `bad` to all of them;
/// the cause is for tests and for a client's own error messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LineError {
    /// [`MAX_LINE`] bytes arrived without an LF.
    #[error("no LF within {MAX_LINE} bytes")]
    TooLong,
    /// Bytes followed the LF before the relay answered.
    #[error("bytes after the request line, before the answer")]
    Early,
    /// The line does not start with `chat-relay/1 `.
    #[error("not a chat-relay/1 request")]
    Prefix,
    /// Neither `serve` nor `connect`, or not followed by one space.
    #[error("the role must be `serve` or `connect`")]
    Role,
    /// The room is not 64 lowercase hex digits followed by one space.
    #[error("the room must be 64 lowercase hex digits")]
    Room,
    /// The side is not 16 lowercase hex digits followed by the LF.
    #[error("the side must be 16 lowercase hex digits, then LF")]
    Side,
}

impl Request {
    /// Parses one whole line, its LF included, and nothing else.
    pub fn parse(line: &[u8]) -> Result<Self, LineError> {
        let rest = line
            .strip_prefix(PREFIX.as_bytes())
            .ok_or(LineError::Prefix)?;
        let (role, rest) = if let Some(rest) = rest.strip_prefix(b"serve ") {
            (Role::Serve, rest)
        } else if let Some(rest) = rest.strip_prefix(b"connect ") {
            (Role::Connect, rest)
        } else {
            return Err(LineError::Role);
        };
        let (room, rest) = hex_field::<ROOM_LEN>(rest, b' ').ok_or(LineError::Room)?;
        let (side, rest) = hex_field::<SIDE_LEN>(rest, b'\n').ok_or(LineError::Side)?;
        if !rest.is_empty() {
            return Err(LineError::Early);
        }
        Ok(Self {
            role,
            room: RoomId(room),
            side: Side(side),
        })
    }

    /// The line, LF included.
    pub fn to_line(&self) -> String {
        format!(
            "{PREFIX}{} {} {}\n",
            self.role.word(),
            hex_lower(&self.room.0),
            hex_lower(&self.side.0)
        )
    }
}

/// What the bytes a relay has read so far amount to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scan {
    /// No LF yet, and room for more: keep reading.
    Incomplete,
    /// A whole line arrived, and nothing after it.
    Line(Request),
    /// Refuse with `bad`.
    Bad(LineError),
}

/// Judges the bytes read so far from a new connection (at most
/// [`MAX_LINE`] of them): a complete request, a refusal, or more to read.
pub fn scan(read: &[u8]) -> Scan {
    match read.iter().position(|&b| b == b'\n') {
        Some(end) if end + 1 < read.len() => Scan::Bad(LineError::Early),
        Some(_) => match Request::parse(read) {
            Ok(request) => Scan::Line(request),
            Err(error) => Scan::Bad(error),
        },
        None if read.len() >= MAX_LINE => Scan::Bad(LineError::TooLong),
        None => Scan::Incomplete,
    }
}

/// The relay's answers: each one line, and the only bytes the relay itself
/// ever sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Answer {
    /// Paired: every later byte comes from the partner.
    Ok,
    /// The relay as a whole is at a limit (circuits or waiting connections).
    Full,
    /// A per-source limit was hit, by the client or by its partner.
    Busy,
    /// No partner came in time (or a registration reached its lifetime).
    Lonely,
    /// Another server (another side) registered the same room.
    Replaced,
    /// The request line was malformed, late, or followed by early bytes.
    Bad,
}

impl Answer {
    /// Every answer, in the order of the spec.
    pub const ALL: [Answer; 6] = [
        Answer::Ok,
        Answer::Full,
        Answer::Busy,
        Answer::Lonely,
        Answer::Replaced,
        Answer::Bad,
    ];

    /// The word, without the LF.
    pub fn word(self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::Full => "full",
            Answer::Busy => "busy",
            Answer::Lonely => "lonely",
            Answer::Replaced => "replaced",
            Answer::Bad => "bad",
        }
    }

    /// The bytes on the wire, LF included.
    pub fn line(self) -> &'static [u8] {
        match self {
            Answer::Ok => b"ok\n",
            Answer::Full => b"full\n",
            Answer::Busy => b"busy\n",
            Answer::Lonely => b"lonely\n",
            Answer::Replaced => b"replaced\n",
            Answer::Bad => b"bad\n",
        }
    }

    /// Parses one whole answer line, its LF included. A client reads up to
    /// the first LF (at most [`MAX_ANSWER`] bytes) and keeps whatever
    /// follows `ok\n`: it is the partner's.
    pub fn parse(line: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|answer| answer.line() == line)
    }
}

/// `bytes` as lowercase hex.
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)].into());
        out.push(DIGITS[usize::from(b & 15)].into());
    }
    out
}

/// `2 * N` lowercase hex digits and then `end`, at the start of `text`.
fn hex_field<const N: usize>(text: &[u8], end: u8) -> Option<([u8; N], &[u8])> {
    if text.len() < 2 * N + 1 || text[2 * N] != end {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text[..2 * N].chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some((out, &text[2 * N + 1..]))
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROOM: &str = "6c0b7c3b1bd9e9cfcdf1ad39e5e7f2b34f0e7b1c7e2a9d00e5c9b0b1e2f3a4b5";

    fn line(role: &str, room: &str, side: &str) -> Vec<u8> {
        format!("chat-relay/1 {role} {room} {side}\n").into_bytes()
    }

    #[test]
    fn parses_both_roles_and_round_trips() {
        for (word, role, len) in [("serve", Role::Serve, 101), ("connect", Role::Connect, 103)] {
            let text = line(word, ROOM, "0011223344556677");
            assert_eq!(text.len(), len);
            let request = Request::parse(&text).unwrap();
            assert_eq!(request.role, role);
            assert_eq!(
                request.side.as_bytes(),
                &[0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]
            );
            assert_eq!(request.room.as_bytes()[..2], [0x6c, 0x0b]);
            assert_eq!(request.to_line().as_bytes(), &text[..]);
            assert_eq!(scan(&text), Scan::Line(request));
        }
    }

    #[test]
    fn refuses_every_deviation() {
        let side = "0011223344556677";
        let upper = ROOM.to_uppercase();
        let cases: Vec<(Vec<u8>, LineError)> = vec![
            (line("serve", ROOM, side)[1..].to_vec(), LineError::Prefix),
            (b"chat-relay/2 serve x\n".to_vec(), LineError::Prefix),
            (b"CHAT-RELAY/1 serve x\n".to_vec(), LineError::Prefix),
            (b"GET / HTTP/1.1\n".to_vec(), LineError::Prefix),
            (line("Serve", ROOM, side), LineError::Role),
            (line("listen", ROOM, side), LineError::Role),
            (
                format!("chat-relay/1 serve  {ROOM} {side}\n").into_bytes(),
                LineError::Room,
            ),
            (line("serve", &upper, side), LineError::Room),
            (line("serve", &ROOM[..62], side), LineError::Room),
            (line("serve", &format!("{ROOM}00"), side), LineError::Room),
            (
                line("serve", &ROOM.replace('6', "g"), side),
                LineError::Room,
            ),
            (line("connect", ROOM, "001122334455667"), LineError::Side),
            (line("connect", ROOM, "00112233445566778"), LineError::Side),
            (line("connect", ROOM, "001122334455667G"), LineError::Side),
            (line("connect", ROOM, "001122334455667 "), LineError::Side),
            (
                format!("chat-relay/1 serve {ROOM} {side}\r\n").into_bytes(),
                LineError::Side,
            ),
            (
                format!("chat-relay/1 serve {ROOM} {side} \n").into_bytes(),
                LineError::Side,
            ),
        ];
        for (text, error) in cases {
            assert_eq!(
                Request::parse(&text),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            assert_eq!(scan(&text), Scan::Bad(error));
        }
    }

    #[test]
    fn scan_waits_for_the_lf_and_refuses_what_follows_it() {
        let text = line("serve", ROOM, "0011223344556677");
        for cut in 0..text.len() {
            assert_eq!(scan(&text[..cut]), Scan::Incomplete, "cut at {cut}");
        }
        let mut early = text.clone();
        early.push(0x16);
        assert_eq!(scan(&early), Scan::Bad(LineError::Early));
        assert_eq!(scan(&[b'x'; MAX_LINE - 1]), Scan::Incomplete);
        assert_eq!(scan(&[b'x'; MAX_LINE]), Scan::Bad(LineError::TooLong));
        assert_eq!(scan(b"\n"), Scan::Bad(LineError::Prefix));
    }

    #[test]
    fn answers_are_single_lines() {
        for answer in Answer::ALL {
            let line = answer.line();
            assert!(line.len() <= MAX_ANSWER);
            assert_eq!(line, format!("{}\n", answer.word()).as_bytes());
            assert_eq!(Answer::parse(line), Some(answer));
            assert_eq!(Answer::parse(&line[..line.len() - 1]), None);
        }
        assert_eq!(Answer::parse(b"OK\n"), None);
        assert_eq!(Answer::parse(b"ok\r\n"), None);
        assert_eq!(Answer::parse(b"ok\nx"), None);
    }

    #[test]
    fn room_debug_shows_only_a_prefix() {
        let room = RoomId::from_bytes([0xab; ROOM_LEN]);
        assert_eq!(format!("{room:?}"), "RoomId(abababab..)");
    }

    proptest! {
        #[test]
        fn any_request_round_trips(room in any::<[u8; 32]>(), side in any::<[u8; 8]>(), serve in any::<bool>()) {
            let request = Request {
                role: if serve { Role::Serve } else { Role::Connect },
                room: RoomId::from_bytes(room),
                side: Side::from_bytes(side),
            };
            let line = request.to_line();
            prop_assert!(line.len() <= MAX_LINE);
            prop_assert_eq!(Request::parse(line.as_bytes()), Ok(request));
            crate::fuzzing::relay_line(line.as_bytes());
            crate::fuzzing::relay_line(&line.as_bytes()[..line.len() - 1]);
        }

        #[test]
        fn scan_never_panics_and_accepts_only_canonical_lines(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            crate::fuzzing::relay_line(&bytes);
            let read = &bytes[..bytes.len().min(MAX_LINE)];
            if let Scan::Line(request) = scan(read) {
                let line = request.to_line();
                prop_assert_eq!(line.as_bytes(), read);
            }
        }
    }
}
