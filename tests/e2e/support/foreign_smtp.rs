//! An SMTP server we did not write, for the `foreign_smtp` scenarios: Python's
//! aiosmtpd (Debian package `python3-aiosmtpd`, installed by `scripts/test.sh`),
//! run as `tests/e2e/foreign/aiosmtpd_server.py` on a free loopback port under
//! the watchdog of [`super::process`], so it dies with the test.
//!
//! The server answers by recipient local part (`defer-*` 451 4.7.1, `bounce-*`
//! 550 5.1.1, otherwise 250), offers 8BITMIME, and STARTTLS with a throwaway
//! self-signed certificate (rcgen), PIPELINING and SMTPUTF8 as
//! [`ForeignOptions`] say, and appends what it saw to a JSON-lines file that
//! [`ForeignSmtp::messages`], [`ForeignSmtp::rcpts`] and
//! [`ForeignSmtp::errors`] read back. Nothing here is our own SMTP code: the
//! command parsing, DATA un-stuffing, TLS and MIME parsing are Python's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::process::{self, Watched};
use super::wait_for;

/// What the foreign server offers in its EHLO reply (8BITMIME always).
#[derive(Debug, Clone, Copy)]
pub struct ForeignOptions {
    pub starttls: bool,
    pub pipelining: bool,
    /// UTF-8 addresses; without it a non-ASCII command gets 500.
    pub smtputf8: bool,
}

/// One accepted message as the foreign server saw it.
#[derive(Debug, Clone, Deserialize)]
pub struct ForeignMessage {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// MAIL FROM parameters (e.g. `BODY=8BITMIME`), upper-cased by aiosmtpd.
    pub mail_options: Vec<String>,
    pub rcpt_options: Vec<String>,
    pub smtp_utf8: bool,
    /// The transaction ran over TLS (after STARTTLS).
    pub tls: bool,
    /// RCPT TO had already arrived when MAIL FROM was answered.
    pub pipelined: bool,
    /// The EHLO name of the session.
    pub ehlo: Option<String>,
    content_hex: String,
    /// Python's MIME parse: the decoded Subject, Message-ID, text/plain part.
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub text_cte: Option<String>,
    pub text: Option<String>,
    pub parse_error: Option<String>,
}

impl ForeignMessage {
    /// The message bytes exactly as received, after DATA un-stuffing.
    pub fn content(&self) -> Vec<u8> {
        let hex = self.content_hex.as_bytes();
        assert!(
            hex.len().is_multiple_of(2),
            "odd hex length from the foreign server"
        );
        hex.chunks(2)
            .map(|pair| {
                let pair = std::str::from_utf8(pair).expect("hex is ASCII");
                u8::from_str_radix(pair, 16).expect("hex digits")
            })
            .collect()
    }
}

/// One RCPT TO the foreign server answered, accepted or not.
#[derive(Debug, Clone, Deserialize)]
pub struct ForeignRcpt {
    pub rcpt: String,
    /// The whole reply line, e.g. `451 4.7.1 Greylisted, …`.
    pub reply: String,
    pub tls: bool,
}

/// A reply of the foreign server that blames the client (500-504, 555).
#[derive(Debug, Clone, Deserialize)]
pub struct ForeignError {
    pub reply: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event {
    Rcpt(ForeignRcpt),
    Message(Box<ForeignMessage>),
    Error(ForeignError),
}

pub struct ForeignSmtp {
    process: Watched,
    port: u16,
    events: PathBuf,
}

impl ForeignSmtp {
    /// Starts the server and waits until it listens. Panics, saying how to
    /// install it, when aiosmtpd is missing: the scenarios are never skipped.
    pub async fn start(options: ForeignOptions) -> ForeignSmtp {
        let python = python_with_aiosmtpd();
        let dir = process::fresh_dir(&process::scratch_root(), "penguin-e2e-foreign");
        let events = dir.join("events.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/foreign/aiosmtpd_server.py");
        let mut command = vec![
            python.display().to_string(),
            script.display().to_string(),
            "--events".into(),
            events.display().to_string(),
        ];
        if options.starttls {
            let (cert, key) = write_certificate(&dir);
            command.extend(["--cert".into(), cert, "--key".into(), key]);
        }
        if !options.pipelining {
            command.push("--no-pipelining".into());
        }
        if options.smtputf8 {
            command.push("--smtputf8".into());
        }
        let log = dir.join("aiosmtpd.log");
        let process = Watched::spawn("aiosmtpd", &command, "TERM", &log, Some(&dir));
        let port = wait_for("aiosmtpd to listen", Duration::from_secs(20), || async {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let port = text
                .lines()
                .find_map(|line| line.strip_prefix("listening on 127.0.0.1:"))
                .and_then(|port| port.trim().parse::<u16>().ok());
            if port.is_none() && !process.is_alive() {
                panic!("aiosmtpd exited before listening:\n{}", process.log_tail());
            }
            port
        })
        .await;
        ForeignSmtp {
            process,
            port,
            events,
        }
    }

    /// The loopback port it listens on (host 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<ForeignMessage> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Message(message) => Some(*message),
                _ => None,
            })
            .collect()
    }

    /// Every reply so far that blamed the client for a malformed, unknown or
    /// out-of-order command.
    pub fn errors(&self) -> Vec<ForeignError> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Error(error) => Some(error),
                _ => None,
            })
            .collect()
    }

    /// Every RCPT TO answered so far, in order.
    pub fn rcpts(&self) -> Vec<ForeignRcpt> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Rcpt(rcpt) => Some(rcpt),
                _ => None,
            })
            .collect()
    }

    /// Waits until exactly `messages` messages and `rcpts` RCPT answers are
    /// recorded and the counts stay so over 10 consecutive polls (a quiet
    /// period, so a late extra copy shows), then checks the server blamed the
    /// client for nothing. Panics naming the counts otherwise.
    pub async fn wait_settled(&self, messages: usize, rcpts: usize, timeout: Duration) {
        let mut stable = 0;
        wait_for(
            &format!("{messages} messages and {rcpts} RCPT answers at aiosmtpd, stable"),
            timeout,
            || {
                let counts = (self.messages().len(), self.rcpts().len());
                assert!(
                    counts.0 <= messages && counts.1 <= rcpts,
                    "aiosmtpd saw more than expected: {counts:?} > {:?}\n{}",
                    (messages, rcpts),
                    self.process.log_tail()
                );
                stable = if counts == (messages, rcpts) {
                    stable + 1
                } else {
                    0
                };
                let settled = stable >= 10;
                async move { settled.then_some(()) }
            },
        )
        .await;
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "aiosmtpd refused commands of our client as malformed or out of order: {errors:?}"
        );
    }

    /// Kills the server by PID (its scratch directory goes with it).
    pub fn stop(mut self) {
        self.process.stop();
    }

    /// Every complete line of the events file, parsed.
    fn events(&self) -> Vec<Event> {
        let text = fs::read_to_string(&self.events).unwrap_or_default();
        let complete = text.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("aiosmtpd event {line:?}: {e}"))
            })
            .collect()
    }
}

/// Debian's `/usr/bin/python3` (where `apt-get install python3-aiosmtpd` puts
/// the module), else `python3` from PATH, whichever imports aiosmtpd.
fn python_with_aiosmtpd() -> PathBuf {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let candidates = [
            Some(PathBuf::from("/usr/bin/python3")),
            process::find_binary("python3", &[]),
        ];
        candidates.into_iter().flatten().find(|python| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    });
    found.clone().unwrap_or_else(|| {
        panic!(
            "aiosmtpd is not installed, and the foreign_smtp scenarios need it (an SMTP \
             server we did not write): run `bash scripts/test.sh`, which installs it, or \
             `sudo apt-get install python3-aiosmtpd` (Debian/Ubuntu; it is for /usr/bin/python3)"
        )
    })
}

/// A throwaway self-signed certificate for `foreign.test`, as PEM files in
/// `dir`; returns their paths (certificate, key).
fn write_certificate(dir: &Path) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["foreign.test".to_owned()])
        .expect("self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    fs::write(&cert, certified.cert.pem()).expect("write cert.pem");
    fs::write(&key, certified.signing_key.serialize_pem()).expect("write key.pem");
    (cert.display().to_string(), key.display().to_string())
}
