//! Invites at the edge: the server's room secret and where it listens,
//! the standing relay registration, and on the joiner's side the invites
//! kept for contacts (`docs/FILES.md`) and the way to a server an invite
//! names. The invite line itself is [`crate::invite`].

use std::io::{self, BufRead, IsTerminal, Read as _, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use base64ct::{Base64UrlUnpadded, Encoding};
use rand::RngExt;

use super::Context;
use super::peer::Me;
use super::trust_policy::{self, PeerView, Policy};
use crate::address::Address;
use crate::cli::{CommonArgs, ServeArgs};
use crate::crypto::Fingerprint;
use crate::crypto::room::RoomSecret;
use crate::error::Error;
use crate::files::{self, LockFile, ReadOutcome};
use crate::home::Home;
use crate::invite::{Invite, MAX_DIRECT, looks_like_invite};
use crate::net::dial::{self, Path as DialPath, Route};
use crate::net::relay_client::{self, Registration};
use crate::net::server::{self, Incoming, Log};
use crate::net::{self, Connected, Decision, NetError};
use crate::protocol::{CloseReason, ProtocolError};
use crate::trust::KnownPeers;

/// The room secret's file in the state folder.
pub const ROOM_FILE: &str = "relay_room";

/// The contacts' invites, by fingerprint.
pub const CONTACTS_FILE: &str = "invites.toml";

/// Largest contacts' invites file read.
const CONTACTS_LIMIT: u64 = 4 << 20;

fn unsafe_or_io(context: String) -> impl FnOnce(io::Error) -> Error {
    move |source| match files::unsafe_state(&source) {
        Some(problem) => Error::Unsafe(problem.clone()),
        None => Error::Io { context, source },
    }
}

/// The server's room secret: read from the state folder, or made (and
/// kept, mode 0600) if there is none or `rotate` asks for a new one. A
/// file others could read or change is refused, as `identity.pem` is.
pub fn room_secret(home: &Home, rotate: bool) -> Result<(RoomSecret, bool), Error> {
    home.create()?;
    let path = home.dir().join(ROOM_FILE);
    if !rotate {
        let read = files::read_private(&path, 256)
            .map_err(unsafe_or_io(format!("cannot read {}", path.display())))?;
        match read {
            ReadOutcome::Missing => {}
            ReadOutcome::TooLarge => return Err(malformed_room(&path)),
            ReadOutcome::Contents(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| malformed_room(&path))?;
                let mut secret = [0u8; 32];
                return match Base64UrlUnpadded::decode(text.trim_end(), &mut secret) {
                    Ok(decoded) if decoded.len() == 32 => {
                        Ok((RoomSecret::from_bytes(secret), false))
                    }
                    _ => Err(malformed_room(&path)),
                };
            }
        }
    }
    let secret = RoomSecret::from_bytes(rand::rng().random());
    let text = format!("{}\n", Base64UrlUnpadded::encode_string(secret.as_bytes()));
    files::write_atomically(&path, text.as_bytes())
        .map_err(unsafe_or_io(format!("cannot write {}", path.display())))?;
    Ok((secret, true))
}

fn malformed_room(path: &Path) -> Error {
    Error::Input(format!(
        "{} is not a room secret (43 characters of base64url); move it aside, or run serve \
         with --new-room to make a new one (invites given out so far stop working)",
        path.display()
    ))
}

/// The addresses an invite lists for a listener on `local`: that address,
/// or for a wildcard one every address of this machine's interfaces (up
/// to [`MAX_DIRECT`], loopback and link-local left out).
pub fn direct_addresses(local: SocketAddr) -> Vec<Address> {
    let port = local.port();
    let ips: Vec<IpAddr> = if local.ip().is_unspecified() {
        let mut all = crate::net::listen::interface_addresses();
        all.dedup();
        all.into_iter()
            .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
            .filter(|ip| local.is_ipv6() || ip.is_ipv4())
            .collect()
    } else {
        vec![local.ip()]
    };
    ips.into_iter()
        .take(MAX_DIRECT)
        .filter_map(|ip| {
            Address::parse_with_default_port(&SocketAddr::new(ip, port).to_string(), port).ok()
        })
        .collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Where `chat serve` takes its conversations from: a listener, relay
/// circuits, or both.
pub struct Endpoints {
    listener: Option<TcpListener>,
    relay: Option<(Address, RoomSecret)>,
    invites: Arc<PendingInvites>,
}

/// The ways in, and the lines that tell the user about them.
pub fn endpoints(home: &Home, args: &ServeArgs, me: Fingerprint) -> Result<Endpoints, Error> {
    let listener = if args.relay.is_some() && args.relay_only {
        None
    } else {
        let bound = crate::net::listen::bind(&args.listen)
            .map_err(Error::io(format!("cannot listen on {}", args.listen)))?;
        for line in bound.describe() {
            eprintln!("{line}");
        }
        Some((bound.listener, bound.local))
    };
    let Some(relay) = &args.relay else {
        return Ok(Endpoints {
            listener: listener.map(|(l, _)| l),
            relay: None,
            invites: Arc::new(PendingInvites::of(home)),
        });
    };
    let (room, made) = room_secret(home, args.new_room)?;
    let invite = Invite {
        relay: relay.clone(),
        room: room.clone(),
        direct: listener
            .as_ref()
            .map(|(_, local)| direct_addresses(*local))
            .unwrap_or_default(),
        once: None,
        fingerprint: me,
    };
    if made {
        eprintln!(
            "Made a new room secret in {}{}.",
            home.dir().join(ROOM_FILE).display(),
            if args.new_room {
                " (invites given out before stop working)"
            } else {
                ""
            }
        );
    }
    keep_serve_invite(home, &invite)?;
    eprintln!(
        "Invite (anyone who has it can reach you through relay {relay}, and knows your key):"
    );
    eprintln!("{invite}");
    Ok(Endpoints {
        listener: listener.map(|(l, _)| l),
        relay: Some((relay.clone(), room)),
        invites: Arc::new(PendingInvites::of(home)),
    })
}

impl Endpoints {
    /// Starts the server on them; the registration lasts as long as the
    /// returned handle.
    pub fn serve(
        self,
        identity: Arc<crate::crypto::PrivateKey>,
        nickname: String,
        mut options: server::Options,
        log: Log,
    ) -> (Receiver<Incoming>, Option<Registration>) {
        options.invites = Some(self.invites);
        let (circuits, registration) = match self.relay {
            Some((relay, room)) => {
                let (sender, receiver) = mpsc::channel::<TcpStream>();
                let registration =
                    relay_client::register(relay, room.room_id(), sender, Arc::clone(&log));
                (Some(receiver), Some(registration))
            }
            None => (None, None),
        };
        let incoming =
            server::serve_with(self.listener, circuits, identity, nickname, options, log);
        (incoming, registration)
    }
}

/// Where an incoming conversation came from, for its description.
pub fn incoming_place(incoming: &Incoming) -> String {
    if incoming.relayed {
        format!("via relay {}", incoming.peer_address)
    } else {
        incoming.peer_address.to_string()
    }
}

/// What `connect` and `send` were asked to reach.
#[derive(Debug, Clone)]
pub enum Target {
    /// A HOST:PORT (or a name that is not a contact with an invite).
    Address(Address),
    /// An invite, given or kept for a contact.
    Invite(Box<Invite>),
    /// A bare word that may name a contact or a `[hosts.NAME]` table
    /// (`app/resolve.rs` settles it into an address).
    Name(String),
}

/// Parses the command line's peer: an invite, or an address (a name is an
/// address until [`resolve`] finds a contact's invite for it).
pub fn parse_target(text: &str) -> Result<Target, String> {
    if looks_like_invite(text) {
        return text
            .parse::<Invite>()
            .map(|invite| Target::Invite(Box::new(invite)))
            .map_err(|e| e.to_string());
    }
    let address = Address::parse_with_default_port(text, crate::address::DEFAULT_PORT);
    if super::resolve::may_be_name(text) {
        return Ok(Target::Name(text.to_string()));
    }
    address.map(Target::Address).map_err(|e| e.to_string())
}

/// The target in force: the one given; else an invite from `CHAT_INVITE`;
/// else (when `stdin_allowed`) one line from standard input, so that an
/// invite need not appear in `ps`. A name of a contact whose invite is kept
/// becomes that invite, unless the name is given with a port.
pub fn resolve(home: &Home, given: Option<&Target>, stdin_allowed: bool) -> Result<Target, Error> {
    let target = match given {
        Some(target) => target.clone(),
        None => from_environment(stdin_allowed)?,
    };
    if let Target::Name(name) = &target
        && let Some(invite) = contact_invite(home, name)?
    {
        return Ok(Target::Invite(Box::new(invite)));
    }
    Ok(target)
}

fn from_environment(stdin_allowed: bool) -> Result<Target, Error> {
    let bad = |e: String| Error::Input(e);
    if let Ok(text) = std::env::var("CHAT_INVITE")
        && !text.trim().is_empty()
    {
        return parse_target(text.trim()).map_err(|e| bad(format!("CHAT_INVITE: {e}")));
    }
    if !stdin_allowed {
        return Err(Error::Usage(
            "a peer is required: give HOST:PORT, a contact's name or an invite, or the invite in CHAT_INVITE"
                .into(),
        ));
    }
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("Paste the invite (chat://...): ");
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .take(crate::invite::MAX_INVITE as u64 + 2)
        .read_line(&mut line)
        .map_err(Error::io("reading the invite from standard input"))?;
    if line.trim().is_empty() {
        return Err(bad(
            "no peer given: give HOST:PORT, a contact's name or an invite, as an argument, in \
             CHAT_INVITE, or as the first line of standard input"
                .into(),
        ));
    }
    parse_target(line.trim()).map_err(|e| bad(format!("standard input: {e}")))
}

/// The file of contacts' invites.
fn contacts_path(home: &Home) -> PathBuf {
    home.dir().join(CONTACTS_FILE)
}

/// The kept invites, fingerprint → invite line.
fn load_contacts(home: &Home) -> Result<toml::Table, Error> {
    let path = contacts_path(home);
    let bytes = match files::read_private(&path, CONTACTS_LIMIT)
        .map_err(unsafe_or_io(format!("cannot read {}", path.display())))?
    {
        ReadOutcome::Missing => return Ok(toml::Table::new()),
        ReadOutcome::TooLarge => {
            return Err(Error::Input(format!(
                "{} is larger than 4 MiB",
                path.display()
            )));
        }
        ReadOutcome::Contents(bytes) => bytes,
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Input(format!("{} is not UTF-8 text", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {}", path.display(), e.message())))?;
    Ok(table
        .get("invite")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default())
}

/// The invite kept for the contact pinned as `name`, if any.
fn contact_invite(home: &Home, name: &str) -> Result<Option<Invite>, Error> {
    if !crate::trust::is_valid_name(name) || !contacts_path(home).exists() {
        return Ok(None);
    }
    let store = KnownPeers::load(&home.known_peers_path())?;
    let Some(peer) = store.get(name) else {
        return Ok(None);
    };
    let contacts = load_contacts(home)?;
    let Some(line) = contacts
        .get(&peer.fingerprint.to_string())
        .and_then(|v| v.as_str())
    else {
        return Ok(None);
    };
    let invite: Invite = line.parse().map_err(|e| {
        Error::Input(format!(
            "{}: the invite kept for {name}: {e}",
            contacts_path(home).display()
        ))
    })?;
    // An invite is kept under the key it names; anything else was edited.
    Ok((invite.fingerprint == peer.fingerprint).then_some(invite))
}

/// Keeps `invite` (without a one-time secret) as the way to reach the key
/// it names, so that `chat connect NAME` finds it next time.
pub fn remember(home: &Home, invite: &Invite) -> Result<(), Error> {
    let path = contacts_path(home);
    let lock_path = home.dir().join(format!("{CONTACTS_FILE}.lock"));
    let _lock = LockFile::acquire(&lock_path)
        .map_err(unsafe_or_io(format!("cannot lock {}", lock_path.display())))?;
    let mut contacts = load_contacts(home)?;
    let line = invite.reusable().to_string();
    let key = invite.fingerprint.to_string();
    if contacts.get(&key).and_then(|v| v.as_str()) == Some(line.as_str()) {
        // Kept already: no write (and no fsync) on every join.
        return Ok(());
    }
    contacts.insert(key, toml::Value::String(line));
    let mut root = toml::Table::new();
    root.insert("invite".into(), toml::Value::Table(contacts));
    let text = format!(
        "# Invites of pinned peers, by fingerprint, so that `chat connect NAME` finds them.\n\
         # They hold room secrets: keep this file private. See docs/FILES.md.\n{}",
        toml::to_string(&root).map_err(|e| Error::Input(e.to_string()))?
    );
    files::write_atomically(&path, text.as_bytes())
        .map_err(unsafe_or_io(format!("cannot write {}", path.display())))
}

/// The way to the server an invite names, given `--no-relay`.
pub fn route(invite: &Invite, no_relay: bool) -> Route {
    Route {
        direct: invite.direct.clone(),
        relay: (!no_relay).then(|| (invite.relay.clone(), invite.room.room_id())),
    }
}

/// Races the invite's paths (direct first, the relay later).
pub fn reach(invite: &Invite, no_relay: bool) -> Result<(TcpStream, DialPath), Error> {
    // Failing to reach the server is a network failure (exit 3).
    dial::race(&route(invite, no_relay))
        .map_err(|e| Error::Busy(format!("cannot reach the invite's server: {e}")))
}

/// Joins the server an invite names: the first path ready carries the
/// handshake, with us as the initiator. The responder must prove the key
/// the invite names before anything about us is sent; a match pins it as
/// verified, and the invite is kept as the way to reach it.
pub(super) fn join(
    context: &Context,
    me: &Me,
    invite: &Invite,
    common: &CommonArgs,
    no_relay: bool,
) -> Result<(Connected, PeerView), Error> {
    if let Some(expected) = common.expect
        && expected != invite.fingerprint
    {
        return Err(Error::Input(format!(
            "--expect {expected} and the invite's key {} differ; give one of them",
            invite.fingerprint
        )));
    }
    let known_peers = context.home.known_peers_path();
    let store = KnownPeers::load(&known_peers)?;
    let policy = Policy::Expect(invite.fingerprint);
    let (stream, path) = reach(invite, no_relay)?;
    eprintln!("Reached the invite's server {path}.");
    let mut judged = None;
    let decide = |peer: &crate::session::PeerIdentity| {
        let verdict = trust_policy::judge_with(&store, &policy, peer, None);
        let decision = match &verdict {
            Ok(_) => Decision::Continue,
            Err(_) => Decision::Abandon(CloseReason::Untrusted),
        };
        judged = Some(verdict);
        decision
    };
    // A one-time invite's proof goes with our identity, in the same write.
    let prove = |established: &mut crate::handshake::Established, flight: &mut Vec<u8>| {
        match &invite.once {
            Some(secret) => {
                let proof =
                    crate::crypto::invite::proof(secret.as_bytes(), &established.transcript_hash);
                established.session.send().invite_proof(&proof, flight)
            }
            None => Ok(()),
        }
    };
    let outcome = net::initiate_with(
        stream,
        &mut rand::rng(),
        &me.identity,
        &me.nickname,
        decide,
        prove,
    );
    let outcome = outcome.map_err(|error| match error {
        NetError::Protocol(ProtocolError::Refused(reason)) => Error::Busy(format!(
            "the invite's server ({path}) refused the connection: {reason}"
        )),
        error => Error::Peer {
            address: format!("the invite's server ({path})"),
            error,
        },
    })?;
    let view = match judged.expect("the trust decision ran") {
        Ok(view) => view,
        Err(Error::Untrusted(_)) => {
            return Err(Error::Untrusted(format!(
                "the server reached {path} does not hold the key the invite names ({});                  refusing to talk, and nothing about you was sent to it",
                invite.fingerprint
            )));
        }
        Err(error) => return Err(error),
    };
    let mut connected = outcome.expect("abandoned only when the trust decision failed");
    if invite.once.is_some() {
        let answer = net::invite::await_result(&mut connected, net::handshake_timeout());
        match answer {
            Ok(Some(true)) => eprintln!(
                "The one-time invite was accepted: the inviter has pinned your key (verified by invite)."
            ),
            Ok(Some(false)) => eprintln!(
                "The one-time invite was NOT accepted (wrong, already used, or expired): the inviter \
                 treats you as a stranger, whose key it has not verified."
            ),
            Ok(None) => eprintln!(
                "The inviter did not answer the one-time invite: it treats you as a stranger."
            ),
            Err(error) => {
                return Err(Error::Peer {
                    address: format!("the invite's server ({path})"),
                    error,
                });
            }
        }
    }
    remember(&context.home, invite)?;
    let name = view.label();
    if view.pinned_now {
        eprintln!("Its key matches the invite; pinned as {name:?} (verified).");
    } else {
        eprintln!("Its key matches the invite (pinned as {name:?}).");
    }
    Ok((connected, view))
}

/// A shared log that prints on standard error.
pub fn stderr_log() -> Log {
    Arc::new(Mutex::new(Box::new(|line: String| eprintln!("{line}"))))
}

/// The reusable invite of the last `serve --relay` in this state folder,
/// for `chat invite`.
pub const SERVE_INVITE_FILE: &str = "relay_invite";

/// The outstanding one-time invites' secrets and expiry times.
pub const ONCE_FILE: &str = "one_time_invites.toml";

/// Largest one-time invites file read.
const ONCE_LIMIT: u64 = 1 << 20;

/// Most one-time invites outstanding at once.
pub const MAX_ONCE: usize = 1000;

/// How long a one-time invite lasts unless told otherwise.
pub const ONCE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One outstanding one-time invite.
struct Once {
    secret: crate::invite::OnceSecret,
    expires: u64,
}

/// The one-time invites of a state folder, read afresh each time (a
/// `chat invite` adds to them while `serve` runs).
pub struct PendingInvites {
    dir: PathBuf,
}

impl PendingInvites {
    /// Those of `home`.
    pub fn of(home: &Home) -> Self {
        Self {
            dir: home.dir().to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(ONCE_FILE)
    }

    /// The unexpired ones.
    fn load(&self) -> Result<Vec<Once>, Error> {
        let path = self.path();
        let bytes = match files::read_private(&path, ONCE_LIMIT)
            .map_err(unsafe_or_io(format!("cannot read {}", path.display())))?
        {
            ReadOutcome::Missing => return Ok(Vec::new()),
            ReadOutcome::TooLarge => {
                return Err(Error::Input(format!(
                    "{} is larger than 1 MiB",
                    path.display()
                )));
            }
            ReadOutcome::Contents(bytes) => bytes,
        };
        let malformed = |what: &str| Error::Input(format!("{}: {what}", path.display()));
        let text = String::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| malformed(e.message()))?;
        let now = now_secs();
        let mut out = Vec::new();
        for entry in table
            .get("once")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let secret = entry
                .get("secret")
                .and_then(|v| v.as_str())
                .and_then(crate::invite::OnceSecret::decode)
                .ok_or_else(|| malformed("an entry without a valid secret"))?;
            let expires = entry
                .get("expires")
                .and_then(|v| v.as_integer())
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| malformed("an entry without a valid expires"))?;
            if expires > now {
                out.push(Once { secret, expires });
            }
        }
        Ok(out)
    }

    fn store(&self, entries: &[Once]) -> Result<(), Error> {
        let path = self.path();
        let mut text = String::from(
            "# One-time invites not yet used, written by `chat invite` and /invite, read by\n\
             # `chat serve --relay`. Secrets: keep this file private. See docs/FILES.md.\n",
        );
        for entry in entries {
            text.push_str(&format!(
                "\n[[once]]\nsecret = \"{}\"\nexpires = {}\n",
                entry.secret.encoded(),
                entry.expires
            ));
        }
        files::write_atomically(&path, text.as_bytes())
            .map_err(unsafe_or_io(format!("cannot write {}", path.display())))
    }

    fn locked<T>(&self, edit: impl FnOnce(&mut Vec<Once>) -> T) -> Result<T, Error> {
        let lock_path = self.dir.join(format!("{ONCE_FILE}.lock"));
        let _lock = LockFile::acquire(&lock_path)
            .map_err(unsafe_or_io(format!("cannot lock {}", lock_path.display())))?;
        let mut entries = self.load()?;
        let before = entries.len();
        let result = edit(&mut entries);
        if entries.len() != before || self.path().exists() {
            self.store(&entries)?;
        }
        Ok(result)
    }

    /// A new one-time secret, kept until `lifetime` has passed.
    pub fn add(&self, lifetime: std::time::Duration) -> Result<crate::invite::OnceSecret, Error> {
        let secret = crate::invite::OnceSecret::from_bytes(rand::rng().random());
        let expires = now_secs().saturating_add(lifetime.as_secs().max(1));
        let kept = secret.clone();
        self.locked(|entries| {
            if entries.len() >= MAX_ONCE {
                return Err(Error::Input(format!(
                    "{MAX_ONCE} one-time invites are outstanding already; let some expire first"
                )));
            }
            entries.push(Once {
                secret: kept,
                expires,
            });
            Ok(())
        })??;
        Ok(secret)
    }
}

impl server::InviteCheck for PendingInvites {
    fn pending(&self) -> bool {
        self.load().is_ok_and(|entries| !entries.is_empty())
    }

    fn check(&self, proof: &[u8; 32], transcript_hash: &[u8; 32]) -> bool {
        self.locked(|entries| {
            let found = entries.iter().position(|entry| {
                crate::crypto::invite::verify(entry.secret.as_bytes(), transcript_hash, proof)
            });
            found.map(|i| entries.remove(i)).is_some()
        })
        .unwrap_or(false)
    }
}

/// A one-time invite for the server that last ran `serve --relay` in this
/// state folder: its reusable invite plus a new secret T.
pub fn one_time(home: &Home, lifetime: std::time::Duration) -> Result<Invite, Error> {
    let path = home.dir().join(SERVE_INVITE_FILE);
    let missing = || {
        Error::Input(format!(
            "no invite to build on: run `{}` in this state folder first",
            home.command(&["serve", "--relay", "HOST:PORT"])
        ))
    };
    let bytes = match files::read_private(&path, crate::invite::MAX_INVITE as u64 + 2)
        .map_err(unsafe_or_io(format!("cannot read {}", path.display())))?
    {
        ReadOutcome::Contents(bytes) => bytes,
        _ => return Err(missing()),
    };
    let mut invite: Invite = String::from_utf8_lossy(&bytes)
        .parse()
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    invite.once = Some(PendingInvites::of(home).add(lifetime)?);
    Ok(invite)
}

/// Keeps the server's reusable invite for `chat invite`.
fn keep_serve_invite(home: &Home, invite: &Invite) -> Result<(), Error> {
    let path = home.dir().join(SERVE_INVITE_FILE);
    files::write_atomically(&path, format!("{invite}\n").as_bytes())
        .map_err(unsafe_or_io(format!("cannot write {}", path.display())))
}

/// Before the trust decision on an incoming peer: one that proved a
/// one-time invite is pinned as verified (by invite); one whose proof
/// failed is told so (INVITE_RESULT) and stays a stranger, and our user
/// hears about it through `say`.
pub fn admit_invited(
    known_peers: &Path,
    invited: Option<bool>,
    peer: &crate::session::PeerIdentity,
    say: &dyn Fn(String),
) {
    match invited {
        Some(true) => {
            let fingerprint = peer.key.fingerprint();
            let known = KnownPeers::load(known_peers)
                .map(|store| store.by_fingerprint(&fingerprint).is_some())
                .unwrap_or(true);
            if !known {
                match KnownPeers::pin_new(known_peers, fingerprint, &peer.nickname, None) {
                    Ok(pinned) => say(format!(
                        "A peer used a one-time invite: its key {fingerprint} is pinned as {:?} \
                         (verified by invite).",
                        pinned.name
                    )),
                    Err(e) => say(format!("chat: cannot pin the invited peer's key: {e}")),
                }
            }
        }
        Some(false) => say(
            "A peer presented a one-time invite that is wrong, already used or expired: it is \
             treated as a stranger (and was told so)."
                .into(),
        ),
        None => {}
    }
}

/// `chat invite`: a one-time invite on standard output.
pub(super) fn command(context: &Context, args: &crate::cli::InviteArgs) -> Result<(), Error> {
    let invite = one_time(&context.home, args.valid)?;
    eprintln!(
        "One-time invite, for one person, valid {} (whoever uses it first is pinned as verified \
         by the running chat serve):",
        humantime::format_duration(args.valid)
    );
    super::print_stdout(&format!("{invite}\n"))
}
