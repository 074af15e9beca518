//! MAC addresses as phones put them in file names: twelve lower-case hex digits.

use std::fmt;

/// A normalised MAC address (`001565a1b2c3`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(String);

impl Mac {
    /// Reads `aa:bb:cc:dd:ee:ff`, `aa-bb-…` or `aabbccddeeff`, any case; `None` otherwise.
    pub fn parse(s: &str) -> Option<Mac> {
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        let separators = s.len() - hex.len();
        let ok = hex.len() == 12
            && hex.chars().all(|c| c.is_ascii_hexdigit())
            && (separators == 0 || separators == 5);
        ok.then(|| Mac(hex.to_ascii_lowercase()))
    }

    /// The twelve digits, lower case, as vendors name their files.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_normalises_to_twelve_lower_case_digits() {
        for s in ["00:15:65:A1:B2:C3", "00-15-65-a1-b2-c3", "001565A1B2C3"] {
            assert_eq!(Mac::parse(s).unwrap().as_str(), "001565a1b2c3", "{s}");
        }
        for bad in [
            "",
            "0015",
            "00:15:65:a1:b2:cz",
            "001565a1b2c3d4",
            "0:015:65:a1:b2:c3:",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
    }
}
