//! `kubectl switchboard`: a kubectl plugin for Switchboard (install the binary
//! `kubectl-switchboard` on `PATH`).
//!
//! - `credentials DEVICE [--rotate]`: SIP user, password, domain, registrar addresses and
//!   transports of a device (a new password first with `--rotate`).
//! - `bindings DEVICE`: the device's live contacts across the registrar's replicas.
//! - `sites`: registered/total devices per Site.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bindings;
mod credentials;
mod services;
mod sites;
mod table;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Switchboard's kubectl plugin.
#[derive(Parser, Debug)]
#[command(name = "kubectl switchboard", version, about)]
struct Cli {
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// SIP user, password, domain, registrar addresses and transports of a device.
    Credentials {
        /// The SipDevice.
        device: String,
        /// Rotate the password first (generated credentials only) and show the new one.
        #[arg(long)]
        rotate: bool,
        /// Look for the registrar's and the provisioning service's Services only in this
        /// namespace (default: every namespace).
        #[arg(long)]
        registrar_namespace: Option<String>,
    },
    /// The device's live contacts across the registrar's replicas.
    Bindings {
        /// The SipDevice.
        device: String,
    },
    /// Registered/total devices per Site.
    Sites {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

/// A client for the kubeconfig and context asked for, and the namespace to work in.
async fn connect(cli: &Cli) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?
        }
        None => Config::from_kubeconfig(&options).await?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let (client, ns) = connect(&cli).await?;
    match &cli.command {
        Command::Credentials {
            device,
            rotate,
            registrar_namespace,
        } => credentials::run(client, &ns, device, *rotate, registrar_namespace.as_deref()).await,
        Command::Bindings { device } => bindings::run(client, &ns, device).await,
        Command::Sites { all_namespaces } => {
            sites::run(client, (!all_namespaces).then_some(ns.as_str())).await
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
