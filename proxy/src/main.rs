//! The `tollgate` binary: parse flags, then run the gateway or check a config file.

use clap::Parser;
use tollgate::cli::{Cli, Command};
use tollgate::{config, server, telemetry};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config: path }) => match config::load(&path, 1) {
            Ok(s) => {
                println!("{}: ok ({} models)", path.display(), s.model_names.len());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        },
        None => {
            telemetry::logging::init(cli.run.log_format, &cli.run.log_level);
            match server::run(cli.run) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "tollgate cannot start");
                    eprintln!("tollgate: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
