//! `switchboard-registrar`: see [`switchboard_registrar`] for the modules, `--help` for options.

use clap::Parser;
use switchboard_registrar::cli::{ha1_command, Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc: a registration makes a few dozen short-lived allocations across two threads;
/// glibc's malloc spent about a fifth of the registrar's CPU time on them (bench/register).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v3's `mimalloc.h`; `libmimalloc-sys`
/// names no constant for it). The test below checks it still names that option.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed memory to the system, unless `MIMALLOC_PURGE_DELAY`
/// says otherwise. The transaction cache forgets a generation of answers at a time and fills
/// the next over the following 32 s: with mimalloc's default (purge 1 s after a page empties)
/// those pages went back to the kernel and were faulted in and zeroed again, about a tenth of
/// the CPU per registration at 20 000/s (bench/register/README.md). The process stays at its
/// peak size instead, which the cache's bound limits.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called before any other thread exists (mi_option_set is not thread-safe).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory();
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

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    #[test]
    fn purge_delay_option_index() {
        // v3's default (1000 ms, options.c) unless the environment sets it: another option at
        // this index would answer something else.
        let expected = std::env::var("MIMALLOC_PURGE_DELAY").map_or(1000, |v| v.parse().unwrap());
        // SAFETY: reads an option; no other test sets mimalloc options.
        let got = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(got, expected);
    }
}
