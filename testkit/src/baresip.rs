//! baresip (Debian `baresip-core`), a real softphone, headless: an account that registers
//! through a given proxy over UDP, TCP or TLS (see shared/INTEROP.md), unregistering
//! (`Expires: 0`) when it is stopped.

use crate::daemon::Daemon;
use crate::process::{free_port, temp_dir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// One baresip account.
#[derive(Debug, Clone)]
pub struct Account {
    /// SIP user (the part before `@`).
    pub user: String,
    /// SIP domain (the digest realm).
    pub domain: String,
    /// Password.
    pub password: String,
    /// Where REGISTERs go (the registrar), resolving nothing.
    pub proxy: SocketAddr,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// Registration interval asked for, in seconds.
    pub regint: u32,
    /// A CA file for TLS (baresip 1.0 does not check it; it is passed all the same).
    pub ca_file: Option<PathBuf>,
    /// The digest username when it is not `user` (`auth_user`), e.g. `1001@domain`.
    pub auth_user: Option<String>,
}

impl Account {
    /// An account over UDP with a 600 s registration interval.
    pub fn udp(user: &str, domain: &str, password: &str, proxy: SocketAddr) -> Account {
        Account {
            user: user.into(),
            domain: domain.into(),
            password: password.into(),
            proxy,
            transport: "udp",
            regint: 600,
            ca_file: None,
            auth_user: None,
        }
    }

    fn line(&self) -> String {
        let param = match self.transport {
            "udp" => String::new(),
            t => format!(";transport={t}"),
        };
        let auth_user = self
            .auth_user
            .as_ref()
            .map_or(String::new(), |u| format!(";auth_user={u}"));
        format!(
            "<sip:{}@{}{param}>;auth_pass={}{auth_user};outbound=\"sip:{}{param}\";regint={}\n",
            self.user, self.domain, self.password, self.proxy, self.regint
        )
    }
}

/// A running baresip with one account.
pub struct Baresip {
    daemon: Daemon,
}

fn config(port: u16, account: &Account) -> String {
    let mut c = format!(
        "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\naudio_player\t\taufile,/dev/null\n\
         audio_source\t\tausine,440\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\n\
         module\t\t\taufile.so\nmodule\t\t\tausine.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n"
    );
    if let Some(ca) = &account.ca_file {
        c.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
    }
    c
}

impl Baresip {
    /// Starts baresip (`-f DIR -s`: SIP trace on stdout) with `account`. Panics when baresip
    /// is not installed (scripts/install-test-deps.sh installs it).
    pub fn start(account: &Account) -> Baresip {
        let dir = temp_dir(&format!("baresip-{}", account.transport));
        std::fs::write(dir.join("config"), config(free_port(), account)).expect("baresip config");
        std::fs::write(dir.join("accounts"), account.line()).expect("baresip accounts");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&dir).arg("-s");
        Baresip {
            daemon: Daemon::spawn("baresip", cmd, &dir),
        }
    }

    /// What baresip printed (its SIP trace included).
    pub fn log(&self) -> String {
        self.daemon.output()
    }

    /// SIGTERM: baresip unregisters, then exits.
    pub fn stop(&mut self) {
        self.daemon.stop_within(Duration::from_secs(15));
    }
}
