//! Watch streams of the four kinds and of the Secrets the operator may read, turned into index
//! [`Change`]s.

use crate::credentials::{CREDENTIALS_LABEL, GENERATED_LABEL};
use crate::index::{Change, Device, Op, SecretEntry};
use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
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
pub fn to_changes<K, R, S>(events: S, convert: fn(K) -> R, wrap: fn(Op<R>) -> Change) -> Changes
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

fn watch<K, R>(
    api: Api<K>,
    config: watcher::Config,
    convert: fn(K) -> R,
    wrap: fn(Op<R>) -> Change,
) -> Changes
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Send + 'static,
{
    let events = watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut K| {
            obj.meta_mut().managed_fields = None;
        });
    to_changes(events, convert, wrap)
}

use kube::runtime::watcher::watcher;

/// Every change the operator follows, merged: the four kinds everywhere; Secrets only where
/// labelled [`CREDENTIALS_LABEL`] (credentials), and the config shards in `config_namespace`.
/// No other Secret is ever listed, so none reaches the operator's memory.
pub fn all(client: &Client, config_namespace: &str) -> Changes {
    let everywhere = watcher::Config::default;
    let credentials = watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true"));
    let shards = watcher::Config::default().labels(&format!("{CONFIG_LABEL}=true"));
    futures::stream::select_all([
        watch::<Site, _>(Api::all(client.clone()), everywhere(), |o| o, Change::Site),
        watch::<SipDevice, _>(
            Api::all(client.clone()),
            everywhere(),
            Device::from,
            Change::Device,
        ),
        watch::<CallPattern, _>(
            Api::all(client.clone()),
            everywhere(),
            |o| o,
            Change::Pattern,
        ),
        watch::<SipRegistration, _>(
            Api::all(client.clone()),
            everywhere(),
            |o| o,
            Change::Registration,
        ),
        watch::<Secret, _>(
            Api::all(client.clone()),
            credentials,
            SecretEntry::from,
            Change::Secret,
        ),
        watch::<Secret, _>(
            Api::namespaced(client.clone(), config_namespace),
            shards,
            SecretEntry::from,
            Change::Shard,
        ),
    ])
    .boxed()
}

/// Gives Secrets the operator generated before it watched by [`CREDENTIALS_LABEL`] that label,
/// so the label-selected watch sees them (else their devices would get new passwords). Lists
/// by the generated label only; a merge patch adds the one label and touches nothing else.
pub async fn label_generated_secrets(client: &Client) -> kube::Result<usize> {
    let api: Api<Secret> = Api::all(client.clone());
    let params =
        ListParams::default().labels(&format!("{GENERATED_LABEL}=true,!{CREDENTIALS_LABEL}"));
    let unlabelled = api.list_metadata(&params).await?;
    let patch = serde_json::json!({"metadata": {"labels": {CREDENTIALS_LABEL: "true"}}});
    let mut done = 0;
    for s in unlabelled {
        let (Some(ns), Some(name)) = (s.metadata.namespace, s.metadata.name) else {
            continue;
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        done += 1;
    }
    Ok(done)
}
