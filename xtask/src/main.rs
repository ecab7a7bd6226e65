//! `cargo xtask …`: the developer's entry point to Plexica.
//!
//! - `cargo xtask up` brings the whole platform up on this machine, with demo data;
//! - `cargo xtask test` runs every test against a real broker, Postgres and Redis;
//! - `cargo xtask bench` measures the platform beside its baselines;
//! - `cargo xtask token` prints a development bearer token.
//!
//! Each subcommand lives in its own module; what they share (finding or starting tansu,
//! Postgres and Redis) is in `services`, the handling of child processes and Ctrl-C in `procs`.

mod bench;
mod demo;
mod example_plugins;
mod procs;
mod services;
mod settings;
mod test;
mod token;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for Plexica: run the platform, run the tests, measure it, issue tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole platform on this machine in the foreground, with demo data (Ctrl-C stops it)
    Up(up::Args),
    /// Run every test against a private tansu broker and the machine's Postgres and Redis
    Test(test::Args),
    /// Measure the platform beside its baselines (release build; `--quick` for a smoke run)
    Bench(bench::Args),
    /// Print a development bearer token (JWT) for the platform's APIs
    Token(token::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Token(args) = &cli.command {
        return report(token::run(args).map(|()| ExitCode::SUCCESS));
    }
    // One thread is plenty for supervising processes, and it keeps every child spawned from the
    // main thread, which their parent-death signal is tied to (see `procs`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    report(runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Test(args) => test::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Token(_) => Ok(ExitCode::SUCCESS),
        }
    }))
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) if error.is::<procs::Interrupted>() => {
            eprintln!("stopped.");
            ExitCode::from(130)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
