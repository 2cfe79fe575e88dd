//! The `chat` binary: parse the command line, run it, print the one fatal
//! error and choose the exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = chat::cli::Cli::parse();
    let json = cli.json();
    match chat::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                chat::app::output::json_event(serde_json::json!({
                    "event": "error",
                    "message": error.to_string(),
                    "exit_code": error.exit_code(),
                }));
            }
            eprintln!("chat: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
