//! `switchboard-registrar`: see [`switchboard_registrar`] for the modules, `--help` for options.

use clap::Parser;
use switchboard_registrar::cli::{ha1_command, Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc: a registration makes a few dozen short-lived allocations across two threads;
/// glibc's malloc spent about a fifth of the registrar's CPU time on them (bench/register).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Ha1 { user, realm }) = &cli.command {
        return ha1_command(user, realm);
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if cli.run.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(switchboard_registrar::server::run(cli.run))
}
