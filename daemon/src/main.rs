//! The `palisade` binary: parses the command line and hands over to `run`, `validate`,
//! `migrate`, `scan` or `user`. Everything that does work lives in `palisade-actors`.

mod cli;
mod conf;
mod logging;
mod notify;
mod run;
mod scan;
mod user;

use clap::Parser;
use std::process::ExitCode;

/// Exit code for a refused configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let sources = conf::Sources {
        conf_dir: cli.conf_dir.clone(),
        env_file: cli.env_file.clone(),
    };
    if let Err(e) = conf::apply_env_file(&sources) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = match conf::load(&sources, &env) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(cli::Command::Run) {
        cli::Command::Validate => {
            eprintln!(
                "configuration ok (stage {}; sources: {})",
                loaded.stage,
                loaded.sources.join(", ")
            );
            ExitCode::SUCCESS
        }
        cli::Command::Run => {
            let set_level = logging::init(&loaded.settings.log);
            run::run(loaded, sources, set_level)
        }
        cli::Command::Migrate => {
            let _level = logging::init(&loaded.settings.log);
            run::migrate(&loaded)
        }
        cli::Command::Scan(args) => {
            let _level = logging::init(&loaded.settings.log);
            scan::scan(loaded, args)
        }
        cli::Command::User(command) => {
            let _level = logging::init(&loaded.settings.log);
            user::user(&loaded, command)
        }
    }
}
