//! Switchboard's provisioning service: a desk phone pointed at it (DHCP option 66, or its
//! vendor's redirect service) fetches its vendor's file by MAC address over HTTPS, with its
//! Site's provisioning credentials, and registers with what it finds.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`mac`] | MAC addresses as phones spell them in file names |
//! | [`digitmap`] | the digit map a device's site and patterns imply (pure) |
//! | [`profile`] | device + site + credentials + registrar address → what every file says (pure) |
//! | [`vendor`] | paths and file formats: Yealink, Polycom, Grandstream, Linphone, JSON (pure) |

pub mod digitmap;
pub mod mac;
pub mod profile;
pub mod vendor;
