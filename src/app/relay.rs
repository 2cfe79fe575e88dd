//! `chat relay`: the command line's limits become the relay's, and its lines
//! go to standard error.

use std::sync::Arc;

use crate::cli::RelayArgs;
use crate::error::Error;
use crate::net::relay::{self, Config, Limits, RelayError};

/// `chat relay`.
pub(super) fn relay(args: &RelayArgs) -> Result<(), Error> {
    let config = Config {
        listen: args.listen,
        limits: Limits {
            new_per_minute: args.max_new_per_minute,
            unpaired_per_source: args.max_unpaired_per_source,
            unpaired: args.max_unpaired,
            circuits_per_source: args.max_circuits_per_source,
            circuits: args.max_circuits,
            line_timeout: args.line_timeout,
            lonely_timeout: args.lonely_timeout,
            registration_lifetime: args.registration_lifetime,
            idle_timeout: args.idle_timeout,
        },
        summary_every: args.summary_every,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let log: relay::Log = Arc::new(|line: &str| eprintln!("{line}"));
    relay::run(config, log).map_err(|error| match error {
        RelayError::Listen { address, source } => Error::Io {
            context: format!("cannot listen on {address}"),
            source,
        },
        RelayError::Start(source) => Error::Io {
            context: "cannot start the relay".into(),
            source,
        },
    })
}
