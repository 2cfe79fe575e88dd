//! The integration tests, one module per behaviour (`tests/NAME.rs`), built
//! as one test binary: 32 binaries each linking the whole program took a
//! good part of CI's five minutes. Run one behaviour with
//! `cargo test --test all NAME::` (for example `cargo test --release --test
//! all file_transfer::`); the shared helpers are in `tests/common/`.

mod common;

mod byte_for_byte;
mod conversation;
mod defaults;
mod engine;
mod exit_codes;
mod feedback;
mod file_transfer;
mod files;
mod fingerprints;
mod first_contact;
mod fuzz_regressions;
mod hostile_peer;
mod identity;
mod impersonation;
mod inbox;
mod interop;
mod invite;
mod listen;
mod names;
mod network_errors;
mod peers;
mod progress;
mod receipts;
mod rekey;
mod relay;
mod repl;
mod resources;
mod shell;
mod short_options;
mod state_folder;
mod tamper;
mod trust;
