//! linphonec (Debian `linphone-cli`), Linphone's engine on the command line, configured only
//! by remote provisioning: its rc file names the provisioning URL, the CA that signed the
//! provisioning service's certificate, and the HTTP digest credentials of the provisioning
//! realm; everything SIP comes from the fetched file.
//!
//! linphonec only runs its event loop while readline waits on a terminal, so it is started
//! under `script` (util-linux) with a pseudo-terminal, and stopped by typing `quit`.

use crate::process::{free_port, temp_dir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// HTTP digest credentials for the provisioning service.
#[derive(Debug, Clone)]
pub struct ProvisioningLogin {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// The challenge's realm.
    pub realm: String,
}

/// A running linphonec.
pub struct Linphone {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Its rc file, HOME and log.
    pub dir: PathBuf,
}

/// The rc file: the provisioning URL (its user part names the login), the CA, the login.
fn rc(config_uri: &str, ca: &Path, login: &ProvisioningLogin, sip_port: u16) -> String {
    format!(
        "[misc]\nconfig-uri={config_uri}\n\n[sip]\nroot_ca={}\nsip_port={sip_port}\n\n\
         [auth_info_0]\nusername={}\npasswd={}\nrealm={}\n",
        ca.display(),
        login.user,
        login.password,
        login.realm
    )
}

impl Linphone {
    /// Starts linphonec on `config_uri` (`https://USER@host:port/…`) trusting `ca`. Panics
    /// when linphonec is not installed (scripts/install-test-deps.sh installs it).
    pub fn provisioned(config_uri: &str, ca: &Path, login: &ProvisioningLogin) -> Linphone {
        let dir = temp_dir("linphonec");
        // Its database lives under $HOME; without the folder the core never starts.
        std::fs::create_dir_all(dir.join("home/.local/share/linphone")).expect("linphone home");
        let rc_path = dir.join("linphonerc");
        std::fs::write(&rc_path, rc(config_uri, ca, login, free_port())).expect("linphonerc");
        let command = format!(
            "linphonec -c {} -d 6 -l {}",
            rc_path.display(),
            dir.join("linphone.log").display()
        );
        let mut child = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("HOME", dir.join("home"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("script (util-linux) must be installed: {e}"));
        let stdin = child.stdin.take();
        assert!(
            Command::new("linphonec").arg("-v").output().is_ok(),
            "linphonec must be installed (.ci/run installs linphone-cli)"
        );
        Linphone {
            child: Some(child),
            stdin,
            dir,
        }
    }

    /// Its debug log (HTTP and SIP traces included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("linphone.log")).unwrap_or_default()
    }

    /// Types `quit` (it unregisters), waits up to 10 s, then kills what is left.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"quit\n");
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.stop();
    }
}
