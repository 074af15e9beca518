//! baresip (Debian `baresip-core`), a real softphone, headless: an account that registers
//! through a given proxy over UDP, TCP or TLS (see shared/INTEROP.md), unregistering
//! (`Expires: 0`) when it is stopped. For calls: it answers by itself when asked to
//! ([`Account::auto_answer`]), and [`Baresip::command`] dials and hangs up through its
//! `ctrl_tcp` module (JSON commands in netstrings).

use crate::daemon::Daemon;
use crate::process::{free_port, temp_dir, wait_until, DEADLINE};
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
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
    /// Answer incoming calls at once (`answermode=auto`).
    pub auto_answer: bool,
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
            auto_answer: false,
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
        let answer = if self.auto_answer {
            ";answermode=auto"
        } else {
            ""
        };
        format!(
            "<sip:{}@{}{param}>;auth_pass={}{auth_user};outbound=\"sip:{}{param}\";regint={}{answer}\n",
            self.user, self.domain, self.password, self.proxy, self.regint
        )
    }
}

/// A running baresip with one account.
pub struct Baresip {
    daemon: Daemon,
    /// Where its `ctrl_tcp` module listens.
    control: u16,
}

/// Its config: SIP on `port`, commands on `control`; the `ausine` source only does 48 kHz
/// stereo, so the audio settings say so (else answering a call fails).
fn config(port: u16, control: u16, account: &Account) -> String {
    let mut c = format!(
        "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\naudio_player\t\taufile,/dev/null\n\
         audio_source\t\tausine,440\nausrc_srate\t\t48000\nausrc_channels\t\t2\n\
         auplay_srate\t\t48000\nauplay_channels\t\t2\nmodule_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\nmodule\t\t\taufile.so\nmodule\t\t\tausine.so\n\
         module_app\t\taccount.so\nmodule_app\t\tmenu.so\nmodule_app\t\tctrl_tcp.so\n\
         ctrl_tcp_listen\t\t127.0.0.1:{control}\n"
    );
    if let Some(ca) = &account.ca_file {
        c.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
    }
    c
}

impl Baresip {
    /// Starts baresip (`-f DIR -s`: SIP trace on stdout) with `account` and waits until it is
    /// ready. Panics when baresip is not installed (scripts/install-test-deps.sh installs it)
    /// or exits at start (its output says why).
    pub fn start(account: &Account) -> Baresip {
        let dir = temp_dir(&format!("baresip-{}", account.transport));
        let control = free_port();
        let config = config(free_port(), control, account);
        std::fs::write(dir.join("config"), config).expect("baresip config");
        std::fs::write(dir.join("accounts"), account.line()).expect("baresip accounts");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&dir).arg("-s");
        let mut daemon = Daemon::spawn("baresip", cmd, &dir);
        daemon.wait_for_output("baresip is ready");
        Baresip { daemon, control }
    }

    /// Runs a command through `ctrl_tcp` (`dial` with a number or URI, `hangup`) and returns
    /// its response's JSON, waiting for the module to listen (deadline: [`DEADLINE`]).
    /// Panics when baresip answers that the command failed.
    pub fn command(&self, command: &str, params: &str) -> serde_json::Value {
        let mut stream = wait_until("baresip's ctrl_tcp to listen", || {
            TcpStream::connect(("127.0.0.1", self.control)).ok()
        });
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let json = serde_json::json!({"command": command, "params": params, "token": command});
        let body = json.to_string();
        write!(stream, "{}:{body},", body.len()).expect("sending a command to baresip");
        // Events come on the same connection; the response is the one carrying our token.
        let mut reader = std::io::BufReader::new(stream);
        loop {
            let value = read_netstring(&mut reader)
                .unwrap_or_else(|e| panic!("baresip's answer to {command}: {e}\n{}", self.log()));
            let response: serde_json::Value = serde_json::from_slice(&value).expect("JSON");
            if response["response"] == true && response["token"] == command {
                assert_eq!(response["ok"], true, "{command} {params}: {response}");
                return response;
            }
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

/// One netstring (`LEN:DATA,`) from `r`.
fn read_netstring(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut len = Vec::new();
    r.read_until(b':', &mut len)?;
    let text = String::from_utf8_lossy(&len);
    let n: usize = text
        .trim_end_matches(':')
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("not a netstring length: {text:?}")))?;
    let mut data = vec![0; n + 1];
    r.read_exact(&mut data)?;
    if data.pop() != Some(b',') {
        return Err(std::io::Error::other("netstring without its closing comma"));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_are_read_one_at_a_time() {
        let mut r = std::io::Cursor::new(b"5:hello,2:{},".to_vec());
        assert_eq!(read_netstring(&mut r).unwrap(), b"hello");
        assert_eq!(read_netstring(&mut r).unwrap(), b"{}");
        let mut bad = std::io::Cursor::new(b"3:abcd".to_vec());
        assert!(read_netstring(&mut bad).is_err());
    }

    #[test]
    fn auto_answer_is_an_account_parameter() {
        let mut a = Account::udp(
            "1002",
            "example.test",
            "pw",
            "127.0.0.1:5060".parse().unwrap(),
        );
        assert!(!a.line().contains("answermode"));
        a.auto_answer = true;
        assert!(
            a.line().trim_end().ends_with(";answermode=auto"),
            "{}",
            a.line()
        );
    }
}
