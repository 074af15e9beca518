//! `ObjectKey`: how every object is named inside the operator (`namespace/name`).
//!
//! Both parts are shared strings: the index, the verdicts and the compiled outcomes each key a
//! map by the same 100 000 device keys, and a clone is a reference count, not two allocations.

use kube::ResourceExt;
use std::fmt;
use std::sync::Arc;

/// Namespace and name of a namespaced object; ordered, so every map over keys is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl ObjectKey {
    /// A key from parts.
    pub fn new(namespace: impl AsRef<str>, name: impl AsRef<str>) -> Self {
        ObjectKey {
            namespace: Arc::from(namespace.as_ref()),
            name: Arc::from(name.as_ref()),
        }
    }

    /// The key of an object (an object without a namespace gets `""`).
    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        ObjectKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// A sibling object in the same namespace (the namespace is shared, not copied).
    pub fn sibling(&self, name: impl AsRef<str>) -> Self {
        ObjectKey {
            namespace: self.namespace.clone(),
            name: Arc::from(name.as_ref()),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
