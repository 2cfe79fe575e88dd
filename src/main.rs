//! The `chat` binary: parse the command line, run it, print the one fatal
//! error and choose the exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = chat::cli::Cli::parse();
    match chat::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
