//! The `tollgate` binary: parse flags, then run the gateway or check a config file.

use clap::Parser;

/// mimalloc: the gateway allocates small buffers per request on every worker thread; glibc's
/// allocator was ~14% of the CPU per proxied request in profiles, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tollgate::cli::{Cli, Command, KeysCommand};
use tollgate::{config, server, telemetry};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check {
            config: path,
            offline,
            completion_reserve,
        }) => {
            let options = config::LoadOptions {
                offline,
                completion_reserve,
            };
            match config::load_with(&path, 1, options) {
                Ok(s) => {
                    for w in &s.warnings {
                        println!("warning: {w}");
                    }
                    let mut counts = vec![
                        counted(s.model_names.len(), "model"),
                        counted(s.consumers.as_ref().map_or(0, |c| c.list.len()), "consumer"),
                        counted(s.limits.len(), "rate limit rule"),
                    ];
                    if !s.warnings.is_empty() {
                        counts.push(counted(s.warnings.len(), "warning"));
                    }
                    println!("{}: ok ({})", path.display(), counts.join(", "));
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    for w in &e.warnings {
                        println!("warning: {w}");
                    }
                    eprintln!("{e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some(Command::Keys {
            command: KeysCommand::New { id },
        }) => {
            let key = tollgate::key_hash::generate_key();
            let hash = tollgate::key_hash::format_hash(&tollgate::key_hash::hash_key(key.as_bytes()));
            let id = id.unwrap_or_else(|| format!("key-{}", &hash[7..15]));
            println!("key:  {key}");
            println!("hash: {hash}");
            println!("config entry: {{ id = \"{id}\", hash = \"{hash}\" }}");
            println!("The key is shown only now; the gateway keeps only its hash.");
            std::process::ExitCode::SUCCESS
        }
        Some(Command::Kb {
            config: file,
            docs,
            index,
            rebuild,
            query,
            results,
        }) => tollgate::cli::kb(
            file.as_deref(),
            docs.as_deref().zip(index.as_deref()),
            rebuild,
            query.as_deref(),
            results,
        ),
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

/// `1 model`, `2 models`.
fn counted(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
