//! A real browser softphone over WSS: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/drive.mjs`), loads our page (`tests/browser/phone.html`) that runs JsSIP
//! from npm. It registers over WSS as demo device 1001 (digest; the test's self-signed
//! certificate accepted by chromium's flags; its Origin on the registrar's allow-list), calls a
//! baresip phone (1002, UDP) and hangs up, is called by it and hung up on, and unregisters.
//! The SIP exchange is asserted from the WebSocket frames the page sent and received (INVITE,
//! 200, ACK, BYE and its 200, both ways), and the binding from `/debug/bindings` (standalone:
//! no cluster here).
//!
//! Media is faked (`--use-fake-device-for-media-stream`) and the SDP translated in the page
//! (see `tests/browser/phone.js`): only signalling is under test. Needs chromium, node and
//! the npm packages of tests/browser, which scripts/install-test-deps.sh installs.

mod common;

use common::{free_port, password, temp_dir, test_certificates, Options, Registrar, DOMAIN};
use switchboard_testkit::baresip::{Account, Baresip};
use switchboard_testkit::browser::{assert_in_order, BrowserPhone};

#[test]
fn a_browser_registers_over_wss_calls_baresip_and_is_called_by_it() {
    let dir = temp_dir("browser-phone");
    let (_ca, cert, key) = test_certificates(&dir);
    let page_port = free_port();
    let origin: &'static str = Box::leak(format!("http://127.0.0.1:{page_port}").into_boxed_str());
    let r = Registrar::start(
        "browser-phone",
        Options {
            tls: Some((&cert, &key)),
            websocket: true,
            args: Box::leak(Box::new(["--ws-allowed-origin", origin])),
            ..Default::default()
        },
    );
    let mut account = Account::udp(
        "1002",
        DOMAIN,
        &password("1002"),
        ([127, 0, 0, 1], r.sip_port).into(),
    );
    account.auto_answer = true;
    let mut baresip = Baresip::start(&account);
    r.wait_bindings("default/softphone-1002", 1);

    let url = format!("wss://127.0.0.1:{}", r.wss_port.unwrap());
    let pw = password("1001");
    let mut phone = BrowserPhone::start(&url, ("1001", &pw, DOMAIN), page_port, &dir);
    phone.wait("registered", |_| true);
    let binding = &r.wait_bindings("default/desk-1001", 1)[0];
    assert_eq!(binding["transport"], "WSS", "{binding}");
    let contact = binding["contact"].as_str().unwrap();
    assert!(
        contact.contains(".invalid") && contact.contains("transport=ws"),
        "{binding}"
    );
    assert!(
        binding["userAgent"].as_str().unwrap().contains("JsSIP"),
        "{binding}"
    );

    // The browser calls baresip (which answers by itself) and hangs up.
    let from = phone.seen.len();
    phone.command("call 1002");
    phone.wait("confirmed", |e| e["direction"] == "outgoing");
    phone.command("hangup");
    phone.wait("received", |e| {
        e["cseq"].as_str().is_some_and(|c| c.ends_with(" BYE"))
    });
    let outgoing = phone.frames_since(from);
    assert_in_order(
        &outgoing,
        &[
            "sent INVITE",
            "received 407 INVITE",
            "sent INVITE",
            "received 200 INVITE",
            "sent ACK",
            "sent BYE",
            "received 200 BYE",
        ],
        "the browser's call to baresip",
    );

    // baresip calls the browser (which answers) and hangs up.
    let from = phone.seen.len();
    baresip.command("dial", "1001");
    let incoming = phone.wait("incoming", |_| true);
    assert_eq!(incoming["from"], "1002");
    phone.wait("confirmed", |e| e["direction"] == "incoming");
    baresip.command("hangup", "");
    phone.wait("ended", |e| {
        e["direction"] == "incoming" && e["originator"] == "remote"
    });
    let incoming = phone.frames_since(from);
    assert_in_order(
        &incoming,
        &[
            "received INVITE",
            "sent 200 INVITE",
            "received ACK",
            "received BYE",
            "sent 200 BYE",
        ],
        "baresip's call to the browser",
    );

    // Unregistering removes the binding.
    phone.command("unregister");
    phone.wait("unregistered", |_| true);
    common::wait_until("the browser's binding to go", || {
        r.device_bindings("default/desk-1001")
            .is_empty()
            .then_some(())
    });
    baresip.stop();
}
