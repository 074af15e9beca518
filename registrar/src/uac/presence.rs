//! Presence and BLF for a registration's AOR: the event packages a SUBSCRIBE asks for, the
//! `Subscription-State` of a NOTIFY (RFC 6665), and NOTIFY bodies turned into the state of
//! each watched entity — PIDF (RFC 3863, with RFC 4480 activities) for `presence` (RFC 3856)
//! and dialog-info (RFC 4235) for `dialog`. Pure: no I/O, no clock.
//!
//! XML is read with `roxmltree`, which refuses DTDs (no entity expansion) and limits nesting;
//! elements are matched by local name, since notifiers differ in the namespace prefixes (and
//! sometimes the namespaces) they write.

use std::collections::BTreeMap;
use switchboard_crds::registration::EntityState;

/// Largest NOTIFY body read (a SIP message is at most 64 KiB anyway).
pub const MAX_BODY: usize = 64 * 1024;

/// An event package the registrar subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Package {
    /// `presence` (RFC 3856), PIDF bodies.
    Presence,
    /// `dialog` (RFC 4235), dialog-info bodies: the busy lamp.
    Dialog,
}

impl Package {
    /// Every package, in the order subscribed.
    pub const ALL: [Package; 2] = [Package::Presence, Package::Dialog];

    /// The `Event` header token.
    pub fn event(self) -> &'static str {
        match self {
            Package::Presence => "presence",
            Package::Dialog => "dialog",
        }
    }

    /// The body type asked for in `Accept`.
    pub fn accept(self) -> &'static str {
        match self {
            Package::Presence => "application/pidf+xml",
            Package::Dialog => "application/dialog-info+xml",
        }
    }

    /// The package an `Event` header value names (`dialog;id=1` → `dialog`).
    pub fn from_event(value: &str) -> Option<Package> {
        let token = value.split(';').next().unwrap_or_default().trim();
        Package::ALL
            .into_iter()
            .find(|p| p.event().eq_ignore_ascii_case(token))
    }
}

/// `Subscription-State` of a NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// Notifications will flow; `expires` seconds left.
    Active {
        /// Seconds left, when given.
        expires: Option<u32>,
    },
    /// Awaiting authorization by the watched user.
    Pending {
        /// Seconds left, when given.
        expires: Option<u32>,
    },
    /// Ended by the notifier.
    Terminated {
        /// `reason` parameter (`timeout`, `deactivated`, `rejected`, `noresource`…).
        reason: Option<String>,
        /// `retry-after` seconds.
        retry_after: Option<u32>,
    },
}

impl SubState {
    /// Reads a `Subscription-State` value; `None` for an unknown state.
    pub fn parse(value: &str) -> Option<SubState> {
        let mut parts = value.split(';');
        let state = parts.next()?.trim().to_ascii_lowercase();
        let mut params = BTreeMap::new();
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            params.insert(k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
        }
        let num = |k: &str| params.get(k).and_then(|v| v.parse::<u32>().ok());
        match state.as_str() {
            "active" => Some(SubState::Active {
                expires: num("expires"),
            }),
            "pending" => Some(SubState::Pending {
                expires: num("expires"),
            }),
            "terminated" => Some(SubState::Terminated {
                reason: params
                    .get("reason")
                    .filter(|r| !r.is_empty())
                    .map(|r| r.to_string()),
                retry_after: num("retry-after"),
            }),
            _ => None,
        }
    }
}

/// One entity's state as a NOTIFY told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    /// The entity's URI.
    pub entity: String,
    /// What it is doing.
    pub state: EntityState,
    /// A note, if the body carried one.
    pub note: Option<String>,
}

/// Why a NOTIFY body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A body type the package does not carry.
    #[error("unexpected Content-Type {0:?}")]
    ContentType(String),
    /// Larger than [`MAX_BODY`].
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// Not well-formed XML (or UTF-8), or a DTD.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Well-formed, but not the document the package carries.
    #[error("not a {0} document")]
    Document(&'static str),
}

/// A dialog's state (RFC 4235 §4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// `trying`, `proceeding` or `early`: not answered yet.
    Early,
    /// `confirmed`: answered.
    Confirmed,
    /// `terminated`.
    Terminated,
}

/// One `<dialog>` of a dialog-info document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Its `id`.
    pub id: String,
    /// Its state.
    pub state: DialogState,
    /// `direction="recipient"`: the entity is being called (else it called, or unknown).
    pub recipient: bool,
}

/// A dialog-info document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    /// The watched entity.
    pub entity: String,
    /// `state="full"` (replaces what is known) rather than `partial` (updates dialogs by id).
    pub full: bool,
    /// Its dialogs.
    pub dialogs: Vec<Dialog>,
}

/// A NOTIFY body, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body: the notifier knows no state yet (RFC 6665 allows it).
    Empty,
    /// A PIDF document.
    Presence(Notified),
    /// A dialog-info document.
    Dialog(DialogInfo),
}

/// Reads the body of a NOTIFY for `package` with `content_type` (media type, parameters ignored).
pub fn parse_body(
    package: Package,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Body, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    if body.len() > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    let media = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if !media.eq_ignore_ascii_case(package.accept()) {
        return Err(BodyError::ContentType(media.to_string()));
    }
    let text = std::str::from_utf8(body).map_err(|e| BodyError::Xml(e.to_string()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| BodyError::Xml(e.to_string()))?;
    match package {
        Package::Presence => parse_pidf(&doc).map(Body::Presence),
        Package::Dialog => parse_dialog_info(&doc).map(Body::Dialog),
    }
}

fn named<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.text().unwrap_or_default().trim().to_string()
}

/// PIDF: busy when a person's activities say `on-the-phone` or `busy`; else idle when a
/// tuple's basic status is `open`; else offline.
fn parse_pidf(doc: &roxmltree::Document<'_>) -> Result<Notified, BodyError> {
    let root = doc.root_element();
    if root.tag_name().name() != "presence" {
        return Err(BodyError::Document("PIDF presence"));
    }
    let entity = root
        .attribute("entity")
        .ok_or(BodyError::Document("PIDF presence (no entity)"))?;
    let busy = named(root, "activities").any(|a| {
        a.children()
            .any(|c| c.is_element() && matches!(c.tag_name().name(), "on-the-phone" | "busy"))
    });
    let open = named(root, "basic").any(|b| text_of(b).eq_ignore_ascii_case("open"));
    let state = if busy {
        EntityState::Busy
    } else if open {
        EntityState::Idle
    } else {
        EntityState::Offline
    };
    let note = named(root, "note").map(text_of).find(|n| !n.is_empty());
    Ok(Notified {
        entity: entity.to_string(),
        state,
        note,
    })
}

fn parse_dialog_info(doc: &roxmltree::Document<'_>) -> Result<DialogInfo, BodyError> {
    let root = doc.root_element();
    if root.tag_name().name() != "dialog-info" {
        return Err(BodyError::Document("dialog-info"));
    }
    let entity = root
        .attribute("entity")
        .ok_or(BodyError::Document("dialog-info (no entity)"))?;
    let mut dialogs = Vec::new();
    for d in root
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "dialog")
    {
        let state = d
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "state")
            .map(text_of)
            .unwrap_or_default();
        let state = match state.to_ascii_lowercase().as_str() {
            "trying" | "proceeding" | "early" => DialogState::Early,
            "confirmed" => DialogState::Confirmed,
            "terminated" => DialogState::Terminated,
            _ => return Err(BodyError::Document("dialog-info (dialog state)")),
        };
        dialogs.push(Dialog {
            id: d.attribute("id").unwrap_or_default().to_string(),
            state,
            recipient: d
                .attribute("direction")
                .is_some_and(|v| v.eq_ignore_ascii_case("recipient")),
        });
    }
    Ok(DialogInfo {
        entity: entity.to_string(),
        full: root.attribute("state") != Some("partial"),
        dialogs,
    })
}

/// The dialogs known per entity, kept across notifications so `partial` ones (RFC 4235
/// §4.1) update what `full` ones said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialogBook {
    entities: BTreeMap<String, BTreeMap<String, Dialog>>,
}

impl DialogBook {
    /// Applies a document and returns the entity's state: busy while any dialog is
    /// confirmed (or one it placed is early), ringing while one to it is early, else idle.
    pub fn apply(&mut self, info: DialogInfo) -> Notified {
        let known = self.entities.entry(info.entity.clone()).or_default();
        if info.full {
            known.clear();
        }
        for d in info.dialogs {
            if d.state == DialogState::Terminated {
                known.remove(&d.id);
            } else {
                known.insert(d.id.clone(), d);
            }
        }
        let any = |f: fn(&Dialog) -> bool| known.values().any(f);
        let state = if any(|d| d.state == DialogState::Confirmed || !d.recipient) {
            EntityState::Busy
        } else if any(|d| d.state == DialogState::Early) {
            EntityState::Ringing
        } else {
            EntityState::Idle
        };
        Notified {
            entity: info.entity,
            state,
            note: None,
        }
    }

    /// Forgets everything (the subscription ended: a new one starts with a full state).
    pub fn clear(&mut self) {
        self.entities.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIDF_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:1001@pbx.test">
  <tuple id="t1"><status><basic>open</basic></status><note>Available</note></tuple>
</presence>"#;

    const PIDF_ON_PHONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:1001@pbx.test">
  <tuple id="t1"><status><basic>open</basic></status></tuple>
  <dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>
</presence>"#;

    const PIDF_CLOSED: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:1001@pbx.test">
  <tuple id="t1"><status><basic>closed</basic></status></tuple></presence>"#;

    fn dialog_info(state: &str, version: u32, dialogs: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="{state}"
    entity="sip:1001@pbx.test">{dialogs}</dialog-info>"#
        )
    }

    fn presence(body: &str) -> Notified {
        match parse_body(
            Package::Presence,
            Some("application/pidf+xml"),
            body.as_bytes(),
        ) {
            Ok(Body::Presence(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    fn dialog(body: &str) -> DialogInfo {
        match parse_body(
            Package::Dialog,
            Some("Application/Dialog-Info+XML; charset=utf-8"),
            body.as_bytes(),
        ) {
            Ok(Body::Dialog(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pidf_open_closed_and_on_the_phone() {
        let n = presence(PIDF_OPEN);
        assert_eq!(
            (n.entity.as_str(), n.state, n.note.as_deref()),
            ("sip:1001@pbx.test", EntityState::Idle, Some("Available"))
        );
        assert_eq!(presence(PIDF_ON_PHONE).state, EntityState::Busy);
        assert_eq!(presence(PIDF_CLOSED).state, EntityState::Offline);
    }

    #[test]
    fn dialog_info_ringing_busy_idle_with_partial_updates() {
        let mut book = DialogBook::default();
        let ring = dialog_info(
            "full",
            1,
            r#"<dialog id="d1" direction="recipient"><state>early</state></dialog>"#,
        );
        assert_eq!(book.apply(dialog(&ring)).state, EntityState::Ringing);
        let answered = dialog_info(
            "partial",
            2,
            r#"<dialog id="d1" direction="recipient"><state>confirmed</state></dialog>"#,
        );
        assert_eq!(book.apply(dialog(&answered)).state, EntityState::Busy);
        // A second call rings while the first goes on: still busy.
        let second = dialog_info(
            "partial",
            3,
            r#"<dialog id="d2" direction="recipient"><state>early</state></dialog>"#,
        );
        assert_eq!(book.apply(dialog(&second)).state, EntityState::Busy);
        let hangup = dialog_info(
            "partial",
            4,
            r#"<dialog id="d1"><state>terminated</state></dialog>"#,
        );
        assert_eq!(book.apply(dialog(&hangup)).state, EntityState::Ringing);
        let idle = dialog_info("full", 5, "");
        assert_eq!(book.apply(dialog(&idle)).state, EntityState::Idle);
        // Dialling out (initiator, early) lights the lamp as busy.
        let out = dialog_info(
            "full",
            6,
            r#"<dialog id="d3" direction="initiator"><state>proceeding</state></dialog>"#,
        );
        assert_eq!(book.apply(dialog(&out)).state, EntityState::Busy);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let p = Package::Presence;
        let ct = Some("application/pidf+xml");
        assert_eq!(parse_body(p, ct, b"  \r\n"), Ok(Body::Empty));
        assert!(matches!(
            parse_body(p, Some("text/plain"), b"<presence/>"),
            Err(BodyError::ContentType(_))
        ));
        assert!(matches!(
            parse_body(p, ct, b"<presence entity='x'><tuple>"),
            Err(BodyError::Xml(_))
        ));
        assert!(matches!(
            parse_body(p, ct, b"<dialog-info entity='x'/>"),
            Err(BodyError::Document(_))
        ));
        assert!(matches!(
            parse_body(p, ct, b"<presence/>"),
            Err(BodyError::Document(_))
        ));
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">
            <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><presence entity="x">&b;</presence>"#;
        assert!(matches!(parse_body(p, ct, bomb), Err(BodyError::Xml(_))));
        assert!(matches!(
            parse_body(p, ct, &[0xff, 0xfe, b'<']),
            Err(BodyError::Xml(_))
        ));
        let big = vec![b'a'; MAX_BODY + 1];
        assert_eq!(parse_body(p, ct, &big), Err(BodyError::TooLarge));
        let unknown_state = dialog_info("full", 1, "<dialog id='x'><state>odd</state></dialog>");
        assert!(parse_body(
            Package::Dialog,
            Some("application/dialog-info+xml"),
            unknown_state.as_bytes()
        )
        .is_err());
    }

    #[test]
    fn subscription_state_and_event_header() {
        assert_eq!(
            SubState::parse("active;expires=3599"),
            Some(SubState::Active {
                expires: Some(3599)
            })
        );
        assert_eq!(
            SubState::parse("Pending"),
            Some(SubState::Pending { expires: None })
        );
        assert_eq!(
            SubState::parse("terminated;reason=deactivated;retry-after=30"),
            Some(SubState::Terminated {
                reason: Some("deactivated".into()),
                retry_after: Some(30)
            })
        );
        assert_eq!(SubState::parse("bogus"), None);
        assert_eq!(Package::from_event("dialog;id=7"), Some(Package::Dialog));
        assert_eq!(Package::from_event(" Presence "), Some(Package::Presence));
        assert_eq!(Package::from_event("message-summary"), None);
    }
}
