//! The command line: flags and subcommands, nothing else.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Palisade: cloud security posture management.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about)]
pub struct Cli {
    /// Configuration directory (default: $PALISADE_CONF_DIR, ./conf, /etc/palisade).
    #[arg(long, global = true)]
    pub conf_dir: Option<PathBuf>,
    /// Env file of KEY=VALUE lines (default: $PALISADE_ENV_FILE).
    #[arg(long, global = true)]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon with the roles the configuration names (the default command).
    Run,
    /// Check the configuration and exit: 0 when valid, 2 naming the bad key otherwise.
    Validate,
    /// Bring the store's schema (`store.url`) up to this build's and exit. Needed once per
    /// upgrade on MySQL, where nodes refuse a schema they do not know; SQLite migrates itself.
    Migrate,
    /// Harvest an account once, evaluate the built-in insights and report.
    ///
    /// Exits 0 with no open findings, 3 with open findings, 1 on errors.
    Scan(ScanArgs),
    /// Manage the users of the REST API and the web interface (in the store `store.url`).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserRole {
    Admin,
    Operator,
    Viewer,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. The password is read from standard input (one line; not echoed on a
    /// terminal), or from --password-file.
    Add {
        /// 1 to 64 letters, digits, '.', '_', '-' or '@'.
        name: String,
        #[arg(long, value_enum)]
        role: UserRole,
        /// Read the password from this file (its first line) instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List the users with their roles.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanProvider {
    Aws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    #[arg(long, value_enum, default_value = "aws")]
    pub provider: ScanProvider,
    /// Region to harvest; repeat for more.
    #[arg(long = "region", required = true)]
    pub regions: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ScanFormat,
    /// Write the report here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}
