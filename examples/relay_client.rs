//! Raw clients for benchmarking `chat relay` (used by `bench/relay.sh`):
//! they speak the relay's line protocol (docs/PROTOCOL.md, "Relay"), or
//! nothing at all when the hop is a `socat` that listens on two ports.
//!
//! ```text
//! relay_client bulk --relay ADDR BYTES         serve + connect through chat relay, BYTES one way
//! relay_client bulk --socat ADDR1,ADDR2 BYTES  the same through `socat TCP-LISTEN:1 TCP-LISTEN:2`
//! relay_client rendezvous --relay ADDR COUNT   both connected to first byte delivered, COUNT times
//! relay_client rendezvous --direct COUNT       the same over one direct TCP connection (reference)
//! relay_client idle --relay ADDR CIRCUITS      open CIRCUITS circuits, send a little on each, hold
//!                                              them until standard input closes
//! ```
//! Each client reads and writes 1 MiB at a time and sets TCP_NODELAY.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["bulk", "--relay", addr, bytes] => bulk(Hop::Relay(parse(addr)), parse(bytes)),
        ["bulk", "--socat", addrs, bytes] => {
            let (a, b) = addrs.split_once(',').expect("ADDR1,ADDR2");
            bulk(Hop::Socat(parse(a), parse(b)), parse(bytes))
        }
        ["rendezvous", "--relay", addr, count] => rendezvous(Some(parse(addr)), parse(count)),
        ["rendezvous", "--direct", count] => rendezvous(None, parse(count)),
        ["idle", "--relay", addr, circuits] => idle(parse(addr), parse(circuits)),
        _ => {
            eprintln!("usage: see the top of examples/relay_client.rs");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("a valid argument")
}

/// Where the two clients meet.
enum Hop {
    /// `chat relay` at this address.
    Relay(SocketAddr),
    /// A socat that accepts one connection on the first address, then one
    /// on the second, and copies between them.
    Socat(SocketAddr, SocketAddr),
}

fn dial(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A random room and side per run, so that runs never meet each other.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn line(role: &str, room: &str) -> String {
    format!("chat-relay/1 {role} {room} {}\n", random_hex(8))
}

/// Reads one answer line byte by byte (nothing after it is consumed).
fn answer(stream: &mut TcpStream) -> io::Result<String> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while out.len() < 16 {
        stream.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.push(byte[0]);
    }
    Err(io::Error::other("answer too long"))
}

fn expect_ok(stream: &mut TcpStream) -> io::Result<()> {
    match answer(stream)?.as_str() {
        "ok" => Ok(()),
        other => Err(io::Error::other(format!("the relay answered {other:?}"))),
    }
}

/// A serve and a connect paired through the relay: (serve, connect).
fn pair(relay: SocketAddr, room: &str) -> io::Result<(TcpStream, TcpStream)> {
    let mut serve = dial(relay)?;
    serve.write_all(line("serve", room).as_bytes())?;
    let mut connect = dial(relay)?;
    connect.write_all(line("connect", room).as_bytes())?;
    expect_ok(&mut connect)?;
    expect_ok(&mut serve)?;
    Ok((serve, connect))
}

/// Connects to a socat hop: the first address at once, the second as soon
/// as socat listens on it.
fn socat_pair(a: SocketAddr, b: SocketAddr) -> io::Result<(TcpStream, TcpStream)> {
    let first = dial(a)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match dial(b) {
            Ok(second) => return Ok((first, second)),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// BYTES from the connect side to the serve side; prints "BYTES SECONDS",
/// timed from the first byte sent to the last byte received.
fn bulk(hop: Hop, bytes: u64) -> io::Result<()> {
    let (mut receiver, mut sender) = match hop {
        Hop::Relay(relay) => pair(relay, &random_hex(32))?,
        Hop::Socat(a, b) => socat_pair(a, b)?,
    };
    let started = Instant::now();
    let writer = thread::spawn(move || -> io::Result<()> {
        let chunk = vec![0x5au8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            sender.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        sender.shutdown(std::net::Shutdown::Write)
    });
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        match receiver.read(&mut buf)? {
            0 => break,
            n => received += n as u64,
        }
    }
    let elapsed = started.elapsed();
    writer.join().expect("the writer thread")?;
    if received != bytes {
        return Err(io::Error::other(format!(
            "received {received} of {bytes} bytes"
        )));
    }
    println!("{bytes} {:.6}", elapsed.as_secs_f64());
    Ok(())
}

/// Both connected to the first byte delivered, COUNT times; prints
/// "p50_us p99_us". Through the relay: from the moment both have sent their
/// line until the byte the connect side sends on `ok` reaches the serve
/// side. Direct: from the end of connect() until the byte the dialler sends
/// at once arrives.
fn rendezvous(relay: Option<SocketAddr>, count: usize) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let direct = listener.local_addr()?;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let sample = match relay {
            Some(relay) => {
                let room = random_hex(32);
                let mut serve = dial(relay)?;
                serve.write_all(line("serve", &room).as_bytes())?;
                let mut connect = dial(relay)?;
                connect.write_all(line("connect", &room).as_bytes())?;
                let started = Instant::now();
                expect_ok(&mut connect)?;
                connect.write_all(b"x")?;
                expect_ok(&mut serve)?;
                let mut byte = [0u8; 1];
                serve.read_exact(&mut byte)?;
                started.elapsed()
            }
            None => {
                let mut dialler = dial(direct)?;
                let started = Instant::now();
                dialler.write_all(b"x")?;
                let (mut accepted, _) = listener.accept()?;
                let mut byte = [0u8; 1];
                accepted.read_exact(&mut byte)?;
                started.elapsed()
            }
        };
        samples.push(sample);
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{:.0} {:.0}",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
    Ok(())
}

/// Opens CIRCUITS circuits, sends 2 KiB each way on each (about what a chat
/// handshake sends), prints "ready" and holds them until standard input
/// closes.
fn idle(relay: SocketAddr, circuits: usize) -> io::Result<()> {
    raise_descriptor_limit();
    let mut held = Vec::with_capacity(circuits);
    let hello = [0x42u8; 2048];
    let mut echo = [0u8; 2048];
    for _ in 0..circuits {
        let (mut serve, mut connect) = pair(relay, &random_hex(32))?;
        connect.write_all(&hello)?;
        serve.read_exact(&mut echo)?;
        serve.write_all(&hello)?;
        connect.read_exact(&mut echo)?;
        held.push((serve, connect));
    }
    println!("ready");
    io::stdout().flush()?;
    let mut rest = Vec::new();
    io::stdin().read_to_end(&mut rest)?;
    Ok(())
}

fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
