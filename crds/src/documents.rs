//! Reads multi-document YAML manifests into typed resources and checks each one, so a GitOps
//! repository can be checked before it reaches a cluster (`switchboard-validate`), and the
//! examples are checked by the test suite with the same code.

use crate::validation::{self, FieldError};
use crate::{CallPattern, SipDevice, SipRegistration, Site};
use kube::CustomResourceExt;
use serde::Deserialize;

/// One document of a manifest.
#[derive(Debug, Clone)]
pub enum Document {
    /// A `Site`.
    Site(Box<Site>),
    /// A `SipDevice`.
    SipDevice(Box<SipDevice>),
    /// A `CallPattern`.
    CallPattern(Box<CallPattern>),
    /// A `SipRegistration`.
    SipRegistration(Box<SipRegistration>),
    /// Any other kind (Secrets, Namespaces…), passed over.
    Other {
        /// `apiVersion/kind` of the document.
        kind: String,
    },
}

/// A document that could not be read as its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Zero-based index of the document in the file.
    pub index: usize,
    /// What serde said, which names the field.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {}: {}", self.index, self.message)
    }
}

/// Splits a YAML stream into typed documents. Empty documents are skipped.
pub fn parse(text: &str) -> Vec<Result<Document, ParseError>> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .filter_map(|(index, de)| {
            let value = match serde_yaml::Value::deserialize(de) {
                Ok(serde_yaml::Value::Null) => return None,
                Ok(v) => v,
                Err(e) => {
                    return Some(Err(ParseError {
                        index,
                        message: e.to_string(),
                    }))
                }
            };
            Some(typed(value).map_err(|message| ParseError { index, message }))
        })
        .collect()
}

fn typed(value: serde_yaml::Value) -> Result<Document, String> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let ours = format!("{}/{}", crate::GROUP, crate::VERSION);
    if api_version != ours {
        return Ok(Document::Other {
            kind: format!("{api_version}/{kind}"),
        });
    }
    let err = |e: serde_yaml::Error| format!("{kind}: {e}");
    Ok(match kind.as_str() {
        "Site" => Document::Site(Box::new(serde_yaml::from_value(value).map_err(err)?)),
        "SipDevice" => Document::SipDevice(Box::new(serde_yaml::from_value(value).map_err(err)?)),
        "CallPattern" => {
            Document::CallPattern(Box::new(serde_yaml::from_value(value).map_err(err)?))
        }
        "SipRegistration" => {
            Document::SipRegistration(Box::new(serde_yaml::from_value(value).map_err(err)?))
        }
        other => return Err(format!("unknown kind {other:?} in {ours}")),
    })
}

impl Document {
    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        let (kind, name) = match self {
            Document::Site(r) => ("Site", r.metadata.name.clone()),
            Document::SipDevice(r) => ("SipDevice", r.metadata.name.clone()),
            Document::CallPattern(r) => ("CallPattern", r.metadata.name.clone()),
            Document::SipRegistration(r) => ("SipRegistration", r.metadata.name.clone()),
            Document::Other { kind } => return kind.clone(),
        };
        format!("{kind}/{}", name.unwrap_or_default())
    }

    /// The object's annotations.
    pub fn annotations(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        match self {
            Document::Site(r) => r.metadata.annotations.as_ref(),
            Document::SipDevice(r) => r.metadata.annotations.as_ref(),
            Document::CallPattern(r) => r.metadata.annotations.as_ref(),
            Document::SipRegistration(r) => r.metadata.annotations.as_ref(),
            Document::Other { .. } => None,
        }
    }

    /// Everything wrong with the object on its own: the Rust validation, then (with the `cel`
    /// feature) the CRD's CEL rules evaluated as the API server would.
    pub fn validate(&self) -> Vec<FieldError> {
        match self {
            Document::Site(r) => with_cel(validation::validate_site(&r.spec), r.as_ref()),
            Document::SipDevice(r) => with_cel(validation::validate_device(&r.spec), r.as_ref()),
            Document::CallPattern(r) => with_cel(validation::validate_pattern(&r.spec), r.as_ref()),
            Document::SipRegistration(r) => {
                with_cel(validation::validate_registration(&r.spec), r.as_ref())
            }
            Document::Other { .. } => Vec::new(),
        }
    }
}

#[cfg(feature = "cel")]
fn with_cel<T: CustomResourceExt + serde::Serialize>(
    mut errors: Vec<FieldError>,
    object: &T,
) -> Vec<FieldError> {
    if let Err(cel) = kube::core::cel::validate_cel(object) {
        for e in cel.into_vec() {
            let field = if e.field_path.is_empty() {
                "(object)".to_string()
            } else {
                e.field_path
            };
            let message = e.message;
            // The Rust checks already name this field in their own words.
            if !errors.iter().any(|known| known.field == field) {
                errors.push(FieldError {
                    field,
                    message: format!("CEL rule: {message}"),
                });
            }
        }
    }
    errors
}

#[cfg(not(feature = "cel"))]
fn with_cel<T: CustomResourceExt + serde::Serialize>(
    errors: Vec<FieldError>,
    _: &T,
) -> Vec<FieldError> {
    errors
}
