//! The provisioning service as phones use it: each vendor's file fetched over HTTPS by that
//! vendor's path, User-Agent and the site's credentials, and parsed back; another site's
//! credentials refused and limited; unknown MACs 404; an unassigned phone told why; an edited
//! password served on the next fetch. Runs the binary on a manifest file (the standalone mode).

use std::path::PathBuf;
use std::process::Command;
use switchboard_testkit::daemon::Daemon;
use switchboard_testkit::https::{basic_auth, https_get, HttpsResponse};
use switchboard_testkit::{free_port, http_get, metric_sum, repo_root, temp_dir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-provisioning");
const HQ: (&str, &str) = ("demo", "provision-demo");
const BRANCH: (&str, &str) = ("branch", "branch-secret");

/// A second site of the same namespace, with its own credentials and one phone.
const BRANCH_SITE: &str = r#"
---
apiVersion: sip.switchboard.dev/v1alpha1
kind: Site
metadata: { name: branch, namespace: default }
spec:
  domain: branch.switchboard.local
  extensions: "2000-2099"
  registration: { transports: [TCP] }
  provisioning: { credentialsSecretRef: { name: branch-provisioning } }
---
apiVersion: v1
kind: Secret
metadata: { name: branch-provisioning, namespace: default }
stringData: { username: branch, password: branch-secret }
---
apiVersion: sip.switchboard.dev/v1alpha1
kind: SipDevice
metadata: { name: branch-2001, namespace: default }
spec:
  macAddress: "00:15:65:00:20:01"
  sipUser: "2001"
  credentials: { secretRef: { name: branch-2001-sip-credentials } }
  assignment: { site: { site: branch, extension: "2001" } }
---
apiVersion: v1
kind: Secret
metadata: { name: branch-2001-sip-credentials, namespace: default }
stringData: { username: "2001", password: branch-2001 }
"#;

struct Service {
    _daemon: Daemon,
    port: u16,
    http_port: u16,
    ca: PathBuf,
    manifest: PathBuf,
}

impl Service {
    fn start(name: &str) -> Service {
        let dir = temp_dir(name);
        let manifest = dir.join("devices.yaml");
        let demo =
            std::fs::read_to_string(repo_root().join("examples/registrar/provisioning.yaml"))
                .unwrap();
        std::fs::write(&manifest, demo + BRANCH_SITE).unwrap();
        let (port, http_port, ca) = (free_port(), free_port(), dir.join("ca.pem"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--manifests")
            .arg(&manifest)
            .arg("--self-signed-cert-out")
            .arg(&ca)
            .args([
                "--sip-server",
                "sip.example.test",
                "--auth-failure-limit",
                "3",
            ]);
        let daemon = Daemon::spawn("provisioning", cmd, &dir);
        let s = Service {
            _daemon: daemon,
            port,
            http_port,
            ca,
            manifest,
        };
        wait_until("the provisioning service to answer", || {
            s.ca.exists()
                .then(|| https_get(s.port, "/healthz", &[], &s.ca))
                .flatten()
        });
        s
    }

    /// `switchboard_provisioning_fetches_total` of one vendor and outcome.
    fn fetches(&self, vendor: &str, outcome: &str) -> f64 {
        let (status, body) = http_get(self.http_port, "/metrics").expect("/metrics answers");
        assert_eq!(status, 200);
        let series = format!(
            "switchboard_provisioning_fetches_total{{outcome=\"{outcome}\",vendor=\"{vendor}\"}}"
        );
        metric_sum(&body, &series)
    }

    fn fetch(&self, path: &str, user_agent: &str, login: Option<(&str, &str)>) -> HttpsResponse {
        let auth = login.map(|(u, p)| basic_auth(u, p));
        let mut headers = vec![("User-Agent", user_agent)];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        https_get(self.port, path, &headers, &self.ca).expect("an HTTPS answer")
    }
}

fn ok(r: HttpsResponse) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

#[test]
fn each_vendor_fetches_its_file_and_reads_its_account() {
    let s = Service::start("vendors");

    // Yealink: key = value.
    let cfg = ok(s.fetch(
        "/provisioning/yealink/001565001001.cfg",
        "Yealink SIP-T46S 66.86.0.15 00:15:65:00:10:01",
        Some(HQ),
    ));
    let kv: std::collections::HashMap<&str, &str> =
        cfg.lines().filter_map(|l| l.split_once(" = ")).collect();
    assert!(cfg.starts_with("#!version:1.0.0.1\n"), "{cfg}");
    assert_eq!(kv["account.1.user_name"], "1001");
    assert_eq!(kv["account.1.password"], "switchboard-1001");
    assert_eq!(kv["account.1.sip_server.1.address"], "sip.example.test");
    assert_eq!(kv["account.1.sip_server.1.port"], "5060");
    assert_eq!(kv["account.1.sip_server.1.expires"], "600");

    // Polycom: the master file names the settings file, fetched from the same folder; its
    // parameters are attributes of <reg>.
    let polycom = "FileTransport PolycomVVX-VVX_411-UA/6.4.3.5156";
    let master = ok(s.fetch("/provisioning/polycom/001565001001.cfg", polycom, Some(HQ)));
    let doc = roxmltree::Document::parse(&master).unwrap();
    let app = doc
        .descendants()
        .find(|n| n.has_tag_name("APPLICATION"))
        .unwrap();
    let settings = app.attribute("CONFIG_FILES").unwrap();
    let xml = ok(s.fetch(
        &format!("/provisioning/polycom/{settings}"),
        polycom,
        Some(HQ),
    ));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let reg = doc.descendants().find(|n| n.has_tag_name("reg")).unwrap();
    assert_eq!(
        reg.attribute("reg.1.address"),
        Some("1001@switchboard.local")
    );
    assert_eq!(
        reg.attribute("reg.1.auth.password"),
        Some("switchboard-1001")
    );
    assert_eq!(reg.attribute("reg.1.server.1.transport"), Some("UDPOnly"));

    // Grandstream: P-values, its file name cfg<mac>.xml.
    let xml = ok(s.fetch(
        "/provisioning/grandstream/cfg001565001002.xml",
        "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 001565001002",
        Some(HQ),
    ));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let p = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(str::to_string)
    };
    assert_eq!(p("P35").as_deref(), Some("1002"));
    assert_eq!(p("P34").as_deref(), Some("switchboard-1002"));
    assert_eq!(p("P47").as_deref(), Some("sip.example.test:5060"));

    // Linphone: lpconfig sections.
    let xml = ok(s.fetch(
        "/provisioning/linphone/001565001003.xml",
        "Linphone/5.0.16 (belle-sip/5.0.0)",
        Some(HQ),
    ));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let entry = |section: &str, name: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("section") && n.attribute("name") == Some(section))
            .flat_map(|s| s.children())
            .find(|e| e.attribute("name") == Some(name))
            .and_then(|e| e.text())
            .map(str::to_string)
    };
    assert_eq!(
        entry("auth_info_0", "passwd").as_deref(),
        Some("switchboard-1003")
    );
    assert_eq!(
        entry("proxy_0", "reg_proxy").as_deref(),
        Some("<sip:sip.example.test:5060;transport=udp>")
    );

    // Generic JSON; the branch site's phone gets its site's transport (TCP only there).
    let json = ok(s.fetch(
        "/provisioning/json/001565002001.json",
        "curl/8",
        Some(BRANCH),
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["account"]["domain"], "branch.switchboard.local");
    assert_eq!(v["account"]["transport"], "TCP");
    assert_eq!(v["account"]["password"], "branch-2001");
}

#[test]
fn credentials_of_another_site_are_refused_and_failures_are_limited() {
    let s = Service::start("refused");
    let path = "/provisioning/yealink/001565001001.cfg";
    let none = s.fetch(path, "Yealink SIP-T46S", None);
    assert_eq!(none.status, 401);
    // Digest first (Linphone answers only that), Basic for the phones that prefer it.
    let challenges: Vec<&str> = none
        .headers
        .lines()
        .filter_map(|l| l.strip_prefix("www-authenticate: "))
        .collect();
    assert_eq!(challenges.len(), 2, "{none:?}");
    assert!(challenges[0].starts_with("Digest realm=\"switchboard-provisioning\", nonce="));
    assert!(challenges[1].starts_with("Basic realm=\"switchboard-provisioning\""));
    assert!(!none.body.contains("switchboard-1001"));
    // The branch's credentials do not fetch an HQ phone, nor HQ's a branch phone.
    assert_eq!(s.fetch(path, "Yealink SIP-T46S", Some(BRANCH)).status, 401);
    assert_eq!(
        s.fetch(
            "/provisioning/yealink/001565002001.cfg",
            "Yealink",
            Some(HQ)
        )
        .status,
        401
    );
    // Second and third failures of (source, "branch") (limit 3): blocked, even with the right
    // password then.
    for _ in 0..2 {
        let guess = s.fetch(
            "/provisioning/yealink/001565002001.cfg",
            "Yealink",
            Some(("branch", "guess")),
        );
        assert_eq!(guess.status, 401);
    }
    let blocked = s.fetch(
        "/provisioning/yealink/001565002001.cfg",
        "Yealink",
        Some(BRANCH),
    );
    assert_eq!(blocked.status, 429, "{blocked:?}");
    assert!(blocked.header("Retry-After").is_some());
    // No credentials, two cross-site logins, two guesses.
    assert_eq!(s.fetches("yealink", "unauthorized"), 5.0);
    assert_eq!(s.fetches("yealink", "blocked"), 1.0);
    // Another user from the same source is not blocked by it.
    assert_eq!(s.fetch(path, "Yealink SIP-T46S", Some(HQ)).status, 200);
}

#[test]
fn unknown_macs_are_404_and_an_unassigned_phone_is_told_why() {
    let s = Service::start("unknown");
    for path in [
        "/provisioning/yealink/0015650010ff.cfg",
        "/provisioning/yealink/y000000000000.cfg",
        "/provisioning/cisco/001565001001.cfg",
        "/provisioning/grandstream/001565001001.xml",
    ] {
        assert_eq!(s.fetch(path, "Yealink", Some(HQ)).status, 404, "{path}");
    }
    let cfg = ok(s.fetch(
        "/provisioning/yealink/001565001099.cfg",
        "Yealink SIP-T46S",
        Some(HQ),
    ));
    assert!(cfg.contains("account.1.enable = 0"), "{cfg}");
    assert!(cfg.contains("Unassigned"), "{cfg}");
    assert!(!cfg.contains("password"), "{cfg}");
    assert_eq!(s.fetches("yealink", "not_found"), 2.0);
    assert_eq!(s.fetches("unknown", "not_found"), 1.0);
    assert_eq!(s.fetches("grandstream", "not_found"), 1.0);
    assert_eq!(s.fetches("yealink", "unassigned"), 1.0);
    assert_eq!(http_get(s.http_port, "/readyz").map(|r| r.0), Some(200));
}

#[test]
fn an_edited_password_is_served_on_the_next_fetch() {
    let s = Service::start("rotation");
    let path = "/provisioning/json/001565001001.json";
    let before: serde_json::Value =
        serde_json::from_str(&ok(s.fetch(path, "curl", Some(HQ)))).unwrap();
    assert_eq!(before["account"]["password"], "switchboard-1001");
    let text = std::fs::read_to_string(&s.manifest).unwrap();
    let rotated = text.replace("password: switchboard-1001", "password: rotated-1001");
    assert_ne!(text, rotated);
    std::fs::write(&s.manifest, rotated).unwrap();
    let after: serde_json::Value =
        serde_json::from_str(&ok(s.fetch(path, "curl", Some(HQ)))).unwrap();
    assert_eq!(after["account"]["password"], "rotated-1001");
    // A file that no longer reads fails the fetch, and the service goes on.
    std::fs::write(&s.manifest, "kind: Site\nspec: [\n").unwrap();
    assert_eq!(s.fetch(path, "curl", Some(HQ)).status, 503);
}

#[test]
fn plain_http_and_garbage_get_nothing_and_the_service_goes_on() {
    use std::io::{Read, Write};
    let s = Service::start("garbage");
    // Plain HTTP on the HTTPS port: no file, no plain answer.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    tcp.write_all(b"GET /provisioning/yealink/001565001001.cfg HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("HTTP/1.") && !text.contains("switchboard-1001"),
        "{text}"
    );
    // Bytes that are no TLS at all, and a connection closed mid-handshake.
    for junk in [
        &b"\x16\x03\x01\x02\x00garbage"[..],
        &[0u8; 3][..],
        b"\r\n\r\n",
    ] {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let _ = tcp.write_all(junk);
    }
    let cfg = ok(s.fetch(
        "/provisioning/yealink/001565001001.cfg",
        "Yealink",
        Some(HQ),
    ));
    assert!(cfg.contains("account.1.password = switchboard-1001"));
}
