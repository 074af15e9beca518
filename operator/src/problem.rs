//! What is wrong with an object: the `reason` and message of its `Accepted=False` condition.
//! A leaf: credentials resolution and validation both report in these terms.

use std::fmt;
use switchboard_crds::validation::FieldError;

/// Why an object is not accepted (the `reason` of its `Accepted=False` condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A field is invalid on its own.
    Invalid,
    /// A value another object already holds.
    Conflict,
    /// A referenced object or Secret key does not exist.
    UnknownReference,
}

impl Reason {
    /// The condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "Invalid",
            Reason::Conflict => "Conflict",
            Reason::UnknownReference => "UnknownReference",
        }
    }
}

/// One problem with one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Category.
    pub reason: Reason,
    /// What is wrong, naming the field or the other object.
    pub message: String,
}

impl Problem {
    /// An invalid field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Problem {
            reason: Reason::Invalid,
            message: message.into(),
        }
    }

    /// A conflict with another object.
    pub fn conflict(message: impl Into<String>) -> Self {
        Problem {
            reason: Reason::Conflict,
            message: message.into(),
        }
    }

    /// A missing reference.
    pub fn missing(message: impl Into<String>) -> Self {
        Problem {
            reason: Reason::UnknownReference,
            message: message.into(),
        }
    }

    /// A single-object validation error.
    pub fn from_field(e: FieldError) -> Self {
        Problem::invalid(e.to_string())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
