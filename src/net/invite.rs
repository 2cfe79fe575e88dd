//! One-time invite records around the start of a session
//! (`docs/PROTOCOL.md`, 17.3): the joiner's INVITE_PROOF travels with its
//! last handshake messages; the inviter takes it before the conversation
//! starts and answers with INVITE_RESULT as its first record.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::{Connected, NetError};
use crate::protocol::ProtocolError;
use crate::session::Event;
use crate::wire::FrameType;

/// How long an inviter with one-time invites outstanding waits for the
/// proof after the handshake. The joiner sends it in the same write as its
/// last handshake message, so it is nearly always there already; a joiner
/// that speaks first (a message) ends the wait at once.
pub const PROOF_WINDOW: Duration = Duration::from_secs(1);

/// Reads until the type of the next frame is known, or `deadline` passes
/// (`None`). With `deadline` already past, only what waits now is read.
fn next_type(connected: &mut Connected, deadline: Instant) -> Result<Option<u8>, NetError> {
    let during = "after the handshake";
    loop {
        if let Some(typ) = connected.decoder.front_type() {
            return Ok(Some(typ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = &mut connected.stream;
        if left.is_zero() {
            stream.set_nonblocking(true)?;
        } else {
            stream.set_read_timeout(Some(left))?;
        }
        let read = stream.read(connected.decoder.spare());
        if left.is_zero() {
            stream.set_nonblocking(false)?;
        }
        match read {
            Ok(0) => return Err(NetError::Cut(during)),
            Ok(n) => connected.decoder.filled(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(NetError::from_read(e, during)),
        }
    }
}

/// Reads the whole front frame (its type is known) and opens it.
fn open_front(
    connected: &mut Connected,
    deadline: Instant,
    expected: FrameType,
) -> Result<Event<'static>, NetError> {
    let frame = super::read_frame(
        &mut connected.stream,
        &mut connected.decoder,
        deadline,
        "after the handshake",
    )?;
    let event = connected.established.session.recv().open(frame)?;
    match (expected, event) {
        (FrameType::InviteProof, Event::InviteProof(proof)) => Ok(Event::InviteProof(proof)),
        (FrameType::InviteResult, Event::InviteResult(accepted)) => {
            Ok(Event::InviteResult(accepted))
        }
        _ => Err(ProtocolError::PeerMisbehaved("unexpected record type").into()),
    }
}

/// The inviter's side: the joiner's INVITE_PROOF, if its first record is
/// one, waiting up to `wait` for that record to begin. Any other first
/// record is left for the conversation.
pub fn take_proof(connected: &mut Connected, wait: Duration) -> Result<Option<[u8; 32]>, NetError> {
    let result = (|| {
        let deadline = Instant::now() + wait;
        if next_type(connected, deadline)? != Some(FrameType::InviteProof as u8) {
            return Ok(None);
        }
        let whole = Instant::now() + super::handshake_timeout();
        match open_front(connected, whole, FrameType::InviteProof)? {
            Event::InviteProof(proof) => Ok(Some(proof)),
            _ => unreachable!("checked by open_front"),
        }
    })();
    connected.stream.set_read_timeout(None)?;
    result
}

/// The inviter's answer, its first record.
pub fn answer(connected: &mut Connected, accepted: bool) -> Result<(), NetError> {
    let mut out = Vec::new();
    connected
        .established
        .session
        .send()
        .invite_result(accepted, &mut out)?;
    connected.stream.write_all(&out)?;
    Ok(())
}

/// The joiner's side: the inviter's INVITE_RESULT, if its first record is
/// one (`None`: it answered something else first, which stays for the
/// conversation, or nothing within `wait`).
pub fn await_result(connected: &mut Connected, wait: Duration) -> Result<Option<bool>, NetError> {
    let result = (|| {
        let deadline = Instant::now() + wait;
        if next_type(connected, deadline)? != Some(FrameType::InviteResult as u8) {
            return Ok(None);
        }
        match open_front(
            connected,
            deadline.max(Instant::now() + wait),
            FrameType::InviteResult,
        )? {
            Event::InviteResult(accepted) => Ok(Some(accepted)),
            _ => unreachable!("checked by open_front"),
        }
    })();
    connected.stream.set_read_timeout(None)?;
    result
}
