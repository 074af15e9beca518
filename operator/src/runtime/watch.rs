//! Watch streams of the four kinds and of the Secrets the operator may read, turned into index
//! [`Change`]s.

use crate::credentials::{CREDENTIALS_LABEL, GENERATED_LABEL};
use crate::index::{Change, Device, Op, SecretEntry};
use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::pin::Pin;
use switchboard_crds::shards::CONFIG_LABEL;
use switchboard_crds::{CallPattern, SipDevice, SipRegistration, Site};

/// A boxed stream of changes.
pub type Changes = Pin<Box<dyn Stream<Item = Result<Change, watcher::Error>> + Send>>;

/// Turns watcher events into changes: each object is first reduced by `convert` to what the
/// index keeps (so the full object is dropped as soon as it arrives), and a (re)list is
/// buffered, reduced, and delivered whole as [`Op::Replace`], so a relist also drops objects
/// deleted while the watch was down.
pub fn to_changes<K, R, S>(
    events: S,
    convert: fn(K) -> R,
    wrap: impl Fn(Op<R>) -> Change + Send + 'static,
) -> Changes
where
    K: Send + 'static,
    R: Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    events
        .scan(Vec::new(), move |buf: &mut Vec<R>, ev| {
            let out = match ev {
                Ok(Event::Init) => {
                    buf.clear();
                    None
                }
                Ok(Event::InitApply(k)) => {
                    buf.push(convert(k));
                    None
                }
                Ok(Event::InitDone) => Some(Ok(wrap(Op::Replace(std::mem::take(buf))))),
                Ok(Event::Apply(k)) => Some(Ok(wrap(Op::Apply(convert(k))))),
                Ok(Event::Delete(k)) => Some(Ok(wrap(Op::Delete(convert(k))))),
                Err(e) => Some(Err(e)),
            };
            future::ready(Some(out))
        })
        .filter_map(future::ready)
        .boxed()
}

/// A watch of `K` in every namespace.
fn watch_all<K, R>(
    client: &Client,
    config: watcher::Config,
    convert: fn(K) -> R,
    wrap: impl Fn(Op<R>) -> Change + Send + 'static,
) -> Changes
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let events = watcher(api, config)
        .default_backoff()
        .modify(drop_managed_fields::<K>);
    to_changes(events, convert, wrap)
}

/// A watch of `K` in one namespace.
fn watch_in<K, R>(
    client: &Client,
    namespace: &str,
    config: watcher::Config,
    convert: fn(K) -> R,
    wrap: impl Fn(Op<R>) -> Change + Send + 'static,
) -> Changes
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    R: Send + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let events = watcher(api, config)
        .default_backoff()
        .modify(drop_managed_fields::<K>);
    to_changes(events, convert, wrap)
}

fn drop_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

use kube::runtime::watcher::watcher;

/// Every change the operator follows, merged: the four kinds everywhere; Secrets only where
/// labelled [`CREDENTIALS_LABEL`] (credentials) — in every namespace, or only in
/// `secret_namespaces` when it lists some (the namespaced install mode, where the operator may
/// read no other namespace's Secrets) — and the config shards in `config_namespace`. No other
/// Secret is ever listed, so none reaches the operator's memory.
pub fn all(client: &Client, config_namespace: &str, secret_namespaces: &[String]) -> Changes {
    let everywhere = watcher::Config::default;
    let shards = watcher::Config::default().labels(&format!("{CONFIG_LABEL}=true"));
    let mut streams = vec![
        watch_all::<Site, _>(client, everywhere(), |o| o, Change::Site),
        watch_all::<SipDevice, _>(client, everywhere(), Device::from, Change::Device),
        watch_all::<CallPattern, _>(client, everywhere(), |o| o, Change::Pattern),
        watch_all::<SipRegistration, _>(client, everywhere(), |o| o, Change::Registration),
        watch_in::<Secret, _>(
            client,
            config_namespace,
            shards,
            SecretEntry::from,
            Change::Shard,
        ),
    ];
    if secret_namespaces.is_empty() {
        streams.push(watch_all::<Secret, _>(
            client,
            credentials(),
            SecretEntry::from,
            Change::Secret,
        ));
    }
    for ns in secret_namespaces {
        let namespace = ns.clone();
        streams.push(watch_in::<Secret, _>(
            client,
            ns,
            credentials(),
            SecretEntry::from,
            move |op| match op {
                Op::Replace(all) => Change::SecretsOf(namespace.clone(), all),
                other => Change::Secret(other),
            },
        ));
    }
    futures::stream::select_all(streams).boxed()
}

fn credentials() -> watcher::Config {
    watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true"))
}

/// Gives Secrets the operator generated before it watched by [`CREDENTIALS_LABEL`] that label,
/// so the label-selected watch sees them (else their devices would get new passwords): in
/// every namespace, or in `namespaces` when it lists some. Lists by the generated label only;
/// a merge patch adds the one label and touches nothing else.
pub async fn label_generated_secrets(
    client: &Client,
    namespaces: &[String],
) -> kube::Result<usize> {
    if namespaces.is_empty() {
        return label_in(client, None).await;
    }
    let mut done = 0;
    for ns in namespaces {
        done += label_in(client, Some(ns)).await?;
    }
    Ok(done)
}

async fn label_in(client: &Client, namespace: Option<&str>) -> kube::Result<usize> {
    let params =
        ListParams::default().labels(&format!("{GENERATED_LABEL}=true,!{CREDENTIALS_LABEL}"));
    let found = match namespace {
        None => {
            let everywhere: Api<Secret> = Api::all(client.clone());
            everywhere.list(&params).await?
        }
        Some(ns) => {
            let tenant: Api<Secret> = Api::namespaced(client.clone(), ns);
            tenant.list(&params).await?
        }
    };
    let patch = serde_json::json!({"metadata": {"labels": {CREDENTIALS_LABEL: "true"}}});
    let mut done = 0;
    for s in found {
        let (Some(ns), Some(name)) = (s.metadata.namespace, s.metadata.name) else {
            continue;
        };
        let owner: Api<Secret> = Api::namespaced(client.clone(), &ns);
        owner
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        done += 1;
    }
    Ok(done)
}
