//! The `chat` binary: parse the command line, run it, print the one fatal
//! error and choose the exit code.

use std::ffi::OsString;
use std::process::ExitCode;

use chat::app::style;
use chat::cli::{Cli, ColorChoice};
use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // clap prints help and usage errors itself, before `--color` is parsed:
    // tell it the user's choice first.
    let color = style::clap_choice(color_choice(&args));
    let cli = match Cli::command()
        .color(color)
        .try_get_matches_from(&args)
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
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
            eprintln!("{} {error}", style::alarm("chat:"));
            ExitCode::from(error.exit_code())
        }
    }
}

/// `--color WHEN` or `--color=WHEN`, wherever it is on the command line
/// (it is a global option); `auto` if absent or not understood (clap then
/// reports it).
fn color_choice(args: &[OsString]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut iter = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        let value = match arg.strip_prefix("--color") {
            Some("") => iter.next().map(|v| v.into_owned()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None if arg == "--" => break,
            None => None,
        };
        match value.as_deref() {
            Some("always") => choice = ColorChoice::Always,
            Some("never") => choice = ColorChoice::Never,
            Some("auto") => choice = ColorChoice::Auto,
            _ => {}
        }
    }
    choice
}
