//! The last value of each AOR this replica wrote or was answered by Redis: its guess of the
//! current value, so a REGISTER is decided and written in one round trip (the compare-and-set
//! script) instead of a read and a write.
//!
//! Only a guess: the script applies a write only if Redis still holds the value guessed, and
//! answers the current value otherwise, so a stale entry (another replica wrote the AOR) costs
//! one more round trip, never a wrong write. Entries exist for AORs this replica updated (the
//! devices of the config it serves) and go when the AOR's bindings do.
//! Hashed with foldhash (seeded per map), as the memory store's maps are.

use crate::location::Binding;
use foldhash::HashMap;
use parking_lot::Mutex;
use std::sync::Arc;

/// One AOR's stored value, raw (what the script compares) and decoded (what is decided from).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Value {
    pub raw: Vec<u8>,
    /// Every stored binding, lapsed ones included.
    pub bindings: Vec<Binding>,
}

/// AOR → last value seen.
#[derive(Default)]
pub(super) struct Seen {
    values: Mutex<HashMap<String, Arc<Value>>>,
}

impl Seen {
    /// The last value seen of `aor`; `None` guesses that it has none.
    pub fn get(&self, aor: &str) -> Option<Arc<Value>> {
        self.values.lock().get(aor).cloned()
    }

    /// Records what Redis holds for `aor` (`None`: nothing).
    pub fn put(&self, aor: &str, value: Option<Arc<Value>>) {
        let mut values = self.values.lock();
        match value {
            Some(v) => match values.get_mut(aor) {
                Some(slot) => *slot = v,
                None => {
                    values.insert(aor.to_string(), v);
                }
            },
            None => {
                values.remove(aor);
            }
        }
    }

    /// Records what this replica wrote for `aor`: `raw`, holding `bindings` (an empty `raw`:
    /// the key was deleted). The value it replaces is rewritten in place when nothing else
    /// holds it (no REGISTER of the AOR in hand), keeping its strings' buffers as the memory
    /// store's refresh does, rather than allocating every string afresh and freeing the old
    /// ones (no difference in CPU at `bench/scale`'s load, where each AOR is refreshed every
    /// second or two: "The value seen rewritten in place").
    pub fn wrote(&self, aor: &str, raw: Vec<u8>, bindings: &[Binding]) {
        if raw.is_empty() {
            return self.forget(aor);
        }
        let fresh = |raw| {
            Arc::new(Value {
                raw,
                bindings: bindings.to_vec(),
            })
        };
        let mut values = self.values.lock();
        match values.get_mut(aor) {
            Some(slot) => match Arc::get_mut(slot) {
                Some(value) => {
                    value.raw = raw;
                    bindings.clone_into(&mut value.bindings);
                }
                None => *slot = fresh(raw),
            },
            None => {
                values.insert(aor.to_string(), fresh(raw));
            }
        }
    }

    /// Forgets `aor` (its value changed in a way not worth recording here).
    pub fn forget(&self, aor: &str) {
        self.values.lock().remove(aor);
    }

    /// Forgets every AOR for which `keep` is false (devices gone from the config), including
    /// those another replica emptied, so entries never outlive their device.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.values.lock().retain(|aor, _| keep(aor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(raw: &[u8]) -> Option<Arc<Value>> {
        Some(Arc::new(Value {
            raw: raw.to_vec(),
            bindings: Vec::new(),
        }))
    }

    #[test]
    fn keeps_the_last_value_and_forgets_emptied_aors() {
        let seen = Seen::default();
        assert!(seen.get("ns/a").is_none());
        seen.put("ns/a", value(b"1"));
        seen.put("ns/a", value(b"2"));
        assert_eq!(seen.get("ns/a").unwrap().raw, b"2");
        seen.put("ns/a", None);
        assert!(seen.get("ns/a").is_none());
        seen.put("ns/b", value(b"3"));
        seen.forget("ns/b");
        assert!(seen.get("ns/b").is_none());
        seen.put("ns/c", value(b"4"));
        seen.put("ns/d", value(b"5"));
        seen.retain(&|aor| aor == "ns/d");
        assert!(seen.get("ns/c").is_none());
        assert_eq!(seen.get("ns/d").unwrap().raw, b"5");
    }

    fn binding(contact: &str) -> Binding {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
        Binding {
            contact: contact.into(),
            q: None,
            expires_at: now + std::time::Duration::from_secs(60),
            registered_at: now,
            updated_at: now,
            call_id: "c@host".into(),
            cseq: 1,
            source: "192.0.2.1:5060".parse().unwrap(),
            transport: switchboard_crds::common::Transport::Udp,
            user_agent: None,
            replica: "r1".into(),
        }
    }

    #[test]
    fn a_write_rewrites_an_unshared_value_in_place_and_never_one_in_hand() {
        let seen = Seen::default();
        seen.wrote(
            "ns/a",
            b"1".to_vec(),
            &[binding("sip:a@x"), binding("sip:b@x")],
        );
        let first = seen.get("ns/a").unwrap();
        let first_at = Arc::as_ptr(&first);
        drop(first);
        // Nothing else holds it: the same value, its buffers kept.
        seen.wrote("ns/a", b"2".to_vec(), &[binding("sip:c@x")]);
        let second = seen.get("ns/a").unwrap();
        assert_eq!(Arc::as_ptr(&second), first_at);
        assert_eq!(second.raw, b"2");
        assert_eq!(second.bindings, vec![binding("sip:c@x")]);
        // A REGISTER in hand still holds `second`: it is left as it was.
        seen.wrote("ns/a", b"3".to_vec(), &[binding("sip:d@x")]);
        assert_eq!(second.raw, b"2");
        assert_eq!(second.bindings, vec![binding("sip:c@x")]);
        let third = seen.get("ns/a").unwrap();
        assert_eq!(third.raw, b"3");
        assert_eq!(third.bindings, vec![binding("sip:d@x")]);
        // Written empty: the key was deleted.
        drop(third);
        seen.wrote("ns/a", Vec::new(), &[]);
        assert!(seen.get("ns/a").is_none());
    }
}
