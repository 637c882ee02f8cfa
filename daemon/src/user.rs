//! `palisade user add|list`: the users of the REST API, managed from the command line.
//!
//! Reads the password from standard input (one line; echo turned off on a terminal) or a
//! file, never from an argument (which `ps` would show), and never prints it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use palisade_actors::auth::{bootstrap, Role};
use palisade_actors::crypto::CredentialsCipher;
use palisade_actors::settings::StoreSettings;
use palisade_actors::store::SharedStore;
use std::sync::Arc;

use crate::cli::{UserCommand, UserRole};
use crate::conf::Loaded;
use crate::run::one_shot_runtime;

/// Run a `user` subcommand; returns the exit code.
pub fn user(loaded: &Loaded, command: UserCommand) -> ExitCode {
    let runtime = match one_shot_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let store = &loaded.settings.store;
    let result = match command {
        UserCommand::Add {
            name,
            role,
            password_file,
        } => read_password(password_file.as_deref())
            .and_then(|password| runtime.block_on(add(store, &name, role, &password))),
        UserCommand::List => runtime.block_on(list(store)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn role_of(role: UserRole) -> Role {
    match role {
        UserRole::Admin => Role::Admin,
        UserRole::Operator => Role::Operator,
        UserRole::Viewer => Role::Viewer,
    }
}

/// The password: the first line of `file`, else one line of standard input.
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    let line = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_string()
        }
        None => {
            let stdin = std::io::stdin();
            let terminal = stdin.is_terminal();
            if terminal {
                eprint!("password: ");
                let _ = std::io::stderr().flush();
                set_echo(false);
            }
            let mut line = String::new();
            let read = stdin.lock().read_line(&mut line);
            if terminal {
                set_echo(true);
                eprintln!();
            }
            read.context("cannot read the password from standard input")?;
            line
        }
    };
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Turn the terminal's echo off or on (best effort, through `stty`).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

/// The store the node uses, opened with the node's credentials key (the store seals any
/// plaintext credentials it finds when it opens, so it must never open with another).
async fn open(settings: &StoreSettings) -> anyhow::Result<SharedStore> {
    let cipher = CredentialsCipher::for_store(settings)?;
    Ok(palisade_actors::store::open_with(&settings.url, Arc::new(cipher)).await?)
}

async fn add(
    settings: &StoreSettings,
    name: &str,
    role: UserRole,
    password: &str,
) -> anyhow::Result<()> {
    let store = open(settings).await?;
    bootstrap::add_user(&store, name, role_of(role), password).await?;
    eprintln!("user {name} added with role {}", role_of(role));
    Ok(())
}

async fn list(settings: &StoreSettings) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let users = store.list_users().await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<32} {:<9} CREATED", "NAME", "ROLE")?;
    for u in users {
        writeln!(
            out,
            "{:<32} {:<9} {}",
            u.name,
            u.role.as_str(),
            u.created_at.format("%Y-%m-%dT%H:%M:%SZ")
        )?;
    }
    Ok(())
}
