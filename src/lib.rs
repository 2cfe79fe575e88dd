//! `chat`: an end-to-end encrypted, trust-on-first-use messenger for the command line.
//!
//! The pure core (`crypto`) knows nothing of sockets, files or terminals; the
//! edge modules (`home`, `identity`, `trust`) own the files in the state folder.

pub mod address;
pub mod app;
pub mod cli;
pub mod crypto;
pub mod error;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod home;
pub mod identity;
pub mod invite;
pub mod net;
pub mod protocol;
pub mod sanitize;
pub mod session;
pub mod transfer;
pub mod trust;
pub mod wire;
