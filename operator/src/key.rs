//! `ObjectKey`: how every object is named inside the operator (`namespace/name`).

use kube::ResourceExt;
use std::fmt;

/// Namespace and name of a namespaced object; ordered, so every map over keys is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key from parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object (an object without a namespace gets `""`).
    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        ObjectKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// A sibling object in the same namespace.
    pub fn sibling(&self, name: impl Into<String>) -> Self {
        ObjectKey::new(self.namespace.clone(), name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
