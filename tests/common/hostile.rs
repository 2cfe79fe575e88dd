//! A peer that follows docs/PROTOCOL.md only as far as it wants to: it
//! completes a real handshake (through the library's handshake drivers,
//! with the fixed test keys) and then seals whatever records it chooses,
//! when it chooses, and reads what the real `chat` sends it. It can leave
//! out receipts, close with any reason, or never hang up.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use chat::crypto::PrivateKey;
use chat::net::{Connected, Decision, NetError};
use chat::protocol::{CloseReason, ProtocolError};
use chat::session::{Event, SendHalf, Session};
use chat::wire::FrameDecoder;

/// A fixed test key, `docs/vectors/keys/NAME.pem`.
pub fn key(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(super::fixture_key(name)).unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// What the real `chat` sent, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// INVITE_PROOF or INVITE_RESULT.
    Invite,
    /// MESSAGE_START.
    Start { id: u64, length: u64 },
    /// MESSAGE_DATA.
    Data { id: u64, data: Vec<u8> },
    /// MESSAGE_END.
    End { id: u64, data: Vec<u8> },
    /// RECEIPT: the last id it covers.
    Receipt(u64),
    /// KEEPALIVE.
    Keepalive,
    /// DONE.
    Done,
    /// CLOSE.
    Close(CloseReason),
    /// KEY_UPDATE, with the new epoch.
    KeyUpdate(u64),
    /// A file record.
    File(FileGot),
    /// The connection ended (FIN or reset).
    Hangup,
}

/// A file record the real `chat` sent, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileGot {
    /// FILE_ACCEPT: the offer, and the proposed resumes (entry, offset).
    Accept { id: u64, resume: Vec<(u16, u64)> },
    /// FILE_REJECT with its reason code.
    Reject { id: u64, reason: u8 },
    /// FILE_VERDICT with its code.
    Verdict { id: u64, entry: u16, verdict: u8 },
    /// FILE_CANCEL with its reason code.
    Cancel { id: u64, reason: u8 },
    /// Any other file record.
    Other,
}

impl FileGot {
    fn of(record: &chat::wire::file::FileRecord<'_>) -> Self {
        use chat::wire::file::FileRecord;
        match record {
            FileRecord::Accept(a) => FileGot::Accept {
                id: a.id,
                resume: a.resume.iter().map(|r| (r.entry, r.offset)).collect(),
            },
            FileRecord::Reject(r) => FileGot::Reject {
                id: r.id,
                reason: r.reason.code(),
            },
            FileRecord::Verdict(v) => FileGot::Verdict {
                id: v.id,
                entry: v.entry,
                verdict: v.verdict.code(),
            },
            FileRecord::Cancel(c) => FileGot::Cancel {
                id: c.id,
                reason: c.reason.code(),
            },
            _ => FileGot::Other,
        }
    }
}

/// One established connection, driven by hand.
pub struct HostilePeer {
    stream: TcpStream,
    decoder: FrameDecoder,
    session: Session,
}

impl HostilePeer {
    /// Accepts one connection on `listener` and answers as the responder
    /// "bob" (key `responder`).
    pub fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = listener.accept().unwrap();
        let connected = chat::net::respond(
            stream,
            &mut rand::rng(),
            &key("responder"),
            "bob",
            || true,
            || key("transient"),
        )
        .expect("the handshake with the real chat");
        Self::from(connected)
    }

    /// Dials `port` on loopback as the initiator "ada" (key `initiator`).
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let connected =
            chat::net::initiate(stream, &mut rand::rng(), &key("initiator"), "ada", |_| {
                Decision::Continue
            })
            .expect("the handshake with the real chat")
            .expect("not abandoned");
        Self::from(connected)
    }

    fn from(connected: Connected) -> Self {
        let Connected {
            stream,
            decoder,
            established,
        } = connected;
        Self {
            stream,
            decoder,
            session: established.session,
        }
    }

    /// Seals one record with `seal` and writes it.
    pub fn send(
        &mut self,
        seal: impl FnOnce(&mut SendHalf, &mut Vec<u8>) -> Result<(), ProtocolError>,
    ) -> std::io::Result<()> {
        let mut frame = Vec::new();
        seal(self.session.send(), &mut frame).expect("seal");
        std::io::Write::write_all(&mut self.stream, &frame)
    }

    /// Sends a whole short message and returns its id.
    pub fn send_message(&mut self, text: &[u8]) -> u64 {
        let mut id = 0;
        self.send(|send, out| {
            id = send.message(text, 64 * 1024, out)?;
            Ok(())
        })
        .unwrap();
        id
    }

    /// The next record from the real chat, waiting at most `timeout`;
    /// `None` if nothing came in time.
    pub fn next(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = Instant::now() + timeout;
        let frame = match chat::net::read_frame(
            &mut self.stream,
            &mut self.decoder,
            deadline,
            "in the test",
        ) {
            Ok(frame) => frame,
            Err(NetError::Timeout(_)) => return None,
            Err(NetError::Cut(_)) => return Some(Got::Hangup),
            Err(NetError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(Got::Hangup);
            }
            Err(e) => panic!("reading from chat: {e}"),
        };
        let event = self
            .session
            .recv()
            .open(frame)
            .expect("an authentic record");
        Some(match event {
            Event::MessageStart { id, length } => Got::Start { id, length },
            Event::MessageData { id, data } => Got::Data {
                id,
                data: data.to_vec(),
            },
            Event::MessageEnd { id, data } => Got::End {
                id,
                data: data.to_vec(),
            },
            Event::Receipt { ids } => Got::Receipt(*ids.end()),
            Event::Keepalive => Got::Keepalive,
            Event::Done => Got::Done,
            Event::Close { reason, .. } => Got::Close(reason),
            Event::KeyUpdate { epoch } => Got::KeyUpdate(epoch),
            Event::File(record) => Got::File(FileGot::of(&record)),
            Event::InviteProof(_) | Event::InviteResult(_) => Got::Invite,
        })
    }

    /// Reads records until one satisfies `wanted`, failing the test after
    /// `timeout`.
    #[track_caller]
    pub fn expect(&mut self, timeout: Duration, wanted: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(got) if wanted(&got) => return got,
                Some(Got::Hangup) => panic!("chat hung up; records before: {seen:?}"),
                Some(got) => seen.push(got),
                None => panic!("nothing wanted within {timeout:?}; records: {seen:?}"),
            }
        }
    }

    /// Reads a whole message and returns its id and text.
    #[track_caller]
    pub fn receive_message(&mut self, timeout: Duration) -> (u64, Vec<u8>) {
        let mut text = Vec::new();
        loop {
            match self.expect(timeout, |got| {
                matches!(got, Got::Start { .. } | Got::Data { .. } | Got::End { .. })
            }) {
                Got::Data { data, .. } => text.extend_from_slice(&data),
                Got::End { id, data } => {
                    text.extend_from_slice(&data);
                    return (id, text);
                }
                _ => {}
            }
        }
    }
}
