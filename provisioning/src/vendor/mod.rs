//! The file each vendor's phone asks for, by path, and its content: pure functions of the
//! [`Profile`] (and the MAC the phone named).
//!
//! | vendor | path under `/provisioning/<vendor>/` |
//! | --- | --- |
//! | Yealink | `<mac>.cfg` (`key = value` lines) |
//! | Polycom | `<mac>.cfg` (the master file, `APPLICATION`, naming the next) and `<mac>-switchboard.cfg` (XML `polycomConfig`) |
//! | Grandstream | `cfg<mac>.xml` (XML `gs_provision`, P-values) |
//! | Linphone | `<mac>.xml` (remote provisioning XML, `lpconfig`) |
//! | generic | `json/<mac>.json` |

mod grandstream;
mod json;
mod linphone;
mod polycom;
mod yealink;

use crate::mac::Mac;
use crate::profile::Profile;

/// A vendor whose file format is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Yealink T-series and similar.
    Yealink,
    /// Polycom/Poly VVX and similar (UC Software).
    Polycom,
    /// Grandstream GXP/GRP.
    Grandstream,
    /// Linphone's remote provisioning.
    Linphone,
    /// Any client: the same facts as JSON.
    Json,
}

/// Every vendor, in the order the docs list them.
pub const ALL: [Vendor; 5] = [
    Vendor::Yealink,
    Vendor::Polycom,
    Vendor::Grandstream,
    Vendor::Linphone,
    Vendor::Json,
];

/// Which of a vendor's files: one each, but a Polycom phone reads its master file
/// (`<mac>.cfg`), which names the file with the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The file the phone asks for first.
    Main,
    /// Polycom's settings file, named by the master file.
    Settings,
}

/// A rendered file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The content.
    pub body: String,
}

impl Vendor {
    /// The path segment after `/provisioning/` (also what the device's status records).
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Yealink => "yealink",
            Vendor::Polycom => "polycom",
            Vendor::Grandstream => "grandstream",
            Vendor::Linphone => "linphone",
            Vendor::Json => "json",
        }
    }

    /// The vendor named by a path segment.
    pub fn from_name(s: &str) -> Option<Vendor> {
        ALL.into_iter().find(|v| v.name() == s)
    }

    /// The file name this vendor's phone asks for first.
    pub fn file_name(self, mac: &Mac) -> String {
        self.file_name_of(mac, Part::Main)
    }

    /// The name of one of this vendor's files.
    pub fn file_name_of(self, mac: &Mac, part: Part) -> String {
        match (self, part) {
            (Vendor::Polycom, Part::Settings) => format!("{mac}-switchboard.cfg"),
            (Vendor::Yealink | Vendor::Polycom, _) => format!("{mac}.cfg"),
            (Vendor::Grandstream, _) => format!("cfg{mac}.xml"),
            (Vendor::Linphone, _) => format!("{mac}.xml"),
            (Vendor::Json, _) => format!("{mac}.json"),
        }
    }

    /// The MAC in a file name this vendor's phone asks for (any case), `None` for another name.
    pub fn mac_of(self, file: &str) -> Option<Mac> {
        self.file_of(file).map(|(mac, _)| mac)
    }

    /// The MAC and which file, for a file name this vendor's phone asks for (any case).
    pub fn file_of(self, file: &str) -> Option<(Mac, Part)> {
        let lower = file.to_ascii_lowercase();
        let (stem, part) = match self {
            Vendor::Polycom => match lower.strip_suffix("-switchboard.cfg") {
                Some(stem) => (Some(stem), Part::Settings),
                None => (lower.strip_suffix(".cfg"), Part::Main),
            },
            Vendor::Yealink => (lower.strip_suffix(".cfg"), Part::Main),
            Vendor::Grandstream => (
                lower
                    .strip_prefix("cfg")
                    .and_then(|s| s.strip_suffix(".xml")),
                Part::Main,
            ),
            Vendor::Linphone => (lower.strip_suffix(".xml"), Part::Main),
            Vendor::Json => (lower.strip_suffix(".json"), Part::Main),
        };
        let stem = stem?;
        // Separators are not part of any vendor's file name.
        if !stem.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        Some((Mac::parse(stem)?, part))
    }

    /// The file for a profile.
    pub fn render(self, mac: &Mac, part: Part, profile: &Profile) -> File {
        let (content_type, body) = match self {
            Vendor::Yealink => ("text/plain; charset=utf-8", yealink::render(profile)),
            Vendor::Polycom if part == Part::Main => ("application/xml", polycom::master(mac)),
            Vendor::Polycom => ("application/xml", polycom::render(profile)),
            Vendor::Grandstream => ("application/xml", grandstream::render(mac, profile)),
            Vendor::Linphone => ("application/xml", linphone::render(profile)),
            Vendor::Json => ("application/json", json::render(mac, profile)),
        };
        File { content_type, body }
    }
}

/// XML text or attribute value, escaped.
fn xml(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The attributes of the first `element` of an XML document, read by an XML parser.
    pub fn attributes(doc: &str, element: &str) -> HashMap<String, String> {
        let doc = roxmltree::Document::parse(doc).expect("well-formed XML");
        let node = doc
            .descendants()
            .find(|n| n.has_tag_name(element))
            .unwrap_or_else(|| panic!("no <{element}>"));
        node.attributes()
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect()
    }

    /// Every leaf element's text, by tag name.
    pub fn elements(doc: &str) -> HashMap<String, String> {
        let doc = roxmltree::Document::parse(doc).expect("well-formed XML");
        doc.descendants()
            .filter(|n| n.is_element() && !n.children().any(|c| c.is_element()))
            .map(|n| {
                (
                    n.tag_name().name().to_string(),
                    n.text().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Linphone's `section`/`entry` pairs: (section, entry) → text.
    pub fn entries(doc: &str) -> HashMap<(String, String), String> {
        let doc = roxmltree::Document::parse(doc).expect("well-formed XML");
        let mut out = HashMap::new();
        for s in doc.descendants().filter(|n| n.has_tag_name("section")) {
            for e in s.children().filter(|n| n.has_tag_name("entry")) {
                let key = (
                    s.attribute("name").unwrap().to_string(),
                    e.attribute("name").unwrap().to_string(),
                );
                out.insert(key, e.text().unwrap_or("").to_string());
            }
        }
        out
    }

    #[test]
    fn paths_name_the_mac_each_vendor_puts_in_them() {
        let mac = Mac::parse("001565A1B2C3").unwrap();
        for v in ALL {
            assert_eq!(Vendor::from_name(v.name()), Some(v));
            let file = v.file_name(&mac);
            assert_eq!(v.mac_of(&file), Some(mac.clone()), "{file}");
            assert_eq!(v.mac_of(&file.to_ascii_uppercase()), Some(mac.clone()));
        }
        assert_eq!(Vendor::Grandstream.file_name(&mac), "cfg001565a1b2c3.xml");
        assert_eq!(Vendor::Yealink.mac_of("y000000000000.cfg"), None);
        assert_eq!(Vendor::Yealink.mac_of("00:15:65:a1:b2:c3.cfg"), None);
        assert_eq!(Vendor::Grandstream.mac_of("001565a1b2c3.xml"), None);
        assert_eq!(
            Vendor::Polycom.file_of("001565A1B2C3-switchboard.cfg"),
            Some((mac.clone(), Part::Settings))
        );
        assert_eq!(
            Vendor::Polycom.file_of("001565a1b2c3.cfg"),
            Some((mac.clone(), Part::Main))
        );
        assert_eq!(
            Vendor::Yealink.file_of("001565a1b2c3-switchboard.cfg"),
            None
        );
        assert_eq!(Vendor::from_name("cisco"), None);
    }
}
