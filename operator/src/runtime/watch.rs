//! Watch streams of the five kinds, turned into index [`Change`]s.

use crate::index::{Change, Device, Op, SecretEntry};
use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::pin::Pin;
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

fn watch<K, R>(client: &Client, convert: fn(K) -> R, wrap: fn(Op<R>) -> Change) -> Changes
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|obj: &mut K| {
            obj.meta_mut().managed_fields = None;
        });
    to_changes(events, convert, wrap)
}

use kube::runtime::watcher::watcher;

/// Every change of every kind, merged.
pub fn all(client: &Client) -> Changes {
    futures::stream::select_all([
        watch::<Site, _>(client, |o| o, Change::Site),
        watch::<SipDevice, _>(client, Device::from, Change::Device),
        watch::<CallPattern, _>(client, |o| o, Change::Pattern),
        watch::<SipRegistration, _>(client, |o| o, Change::Registration),
        watch::<Secret, _>(client, SecretEntry::from, Change::Secret),
    ])
    .boxed()
}
