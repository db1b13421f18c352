//! Postgres and Redis that speak TLS only, with certificates made for the
//! test: a throwaway CA and a server certificate it signed for `localhost`
//! (not for `127.0.0.1`, so a check of the host name can be seen to fail).
//! Each server listens on a free loopback port and runs under the watchdog of
//! [`super::process`]; it needs the local binaries (`scripts/test.sh`
//! installs them), even when `DATABASE_URL`/`REDIS_URL` name other servers.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::pg_server::{cached_initdb, path_str};
use super::process::{self, Watched};

/// A CA and the files of one server certificate it signed.
pub struct TestPki {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what clients trust.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Another CA's certificate, which signed nothing here.
    pub other_ca_file: PathBuf,
}

impl TestPki {
    /// Writes the files under `dir`, the key readable by its owner only.
    pub fn create(dir: &Path) -> TestPki {
        let ca = make_ca("penguin test CA");
        let other = make_ca("unrelated CA");
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &ca)
            .expect("sign the server certificate");
        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            other_ca_file: dir.join("other-ca.pem"),
        };
        fs::write(&pki.ca_file, ca.pem()).expect("write ca.pem");
        fs::write(&pki.other_ca_file, other.pem()).expect("write other-ca.pem");
        fs::write(&pki.cert_file, cert.pem()).expect("write server.crt");
        fs::write(&pki.key_file, key.serialize_pem()).expect("write server.key");
        fs::set_permissions(&pki.key_file, fs::Permissions::from_mode(0o600)).expect("chmod key");
        pki
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Postgres accepting only TLS on 127.0.0.1 (`hostssl` only, trust auth).
pub struct TlsPostgres {
    pub port: u16,
    pub pki: TestPki,
    process: Watched,
}

impl TlsPostgres {
    pub fn start() -> TlsPostgres {
        let bindir = process::find_pg_bindir()
            .expect("PostgreSQL binaries (bash scripts/test.sh installs them)");
        let root = process::scratch_root();
        let run_dir = process::fresh_dir(&root, "penguin-e2e-pgtls");
        let data = run_dir.join("data");
        let cache = cached_initdb(&bindir, &root);
        process::run(
            "copy cached initdb",
            "cp",
            &["-a", &path_str(&cache), &path_str(&data)],
        );
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        let pki = TestPki::create(&run_dir);
        if process::running_as_root() {
            process::run(
                "chown run dir",
                "chown",
                &["-R", "postgres:postgres", &path_str(&run_dir)],
            );
        }
        let port = free_port();
        let mut command = process::as_postgres_user();
        command.extend(
            [
                path_str(&bindir.join("postgres")).as_str(),
                "-D",
                &path_str(&data),
                "-k",
                &path_str(&run_dir),
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "ssl=on",
                "-c",
                &format!("ssl_cert_file={}", path_str(&pki.cert_file)),
                "-c",
                &format!("ssl_key_file={}", path_str(&pki.key_file)),
                "-c",
                "fsync=off",
            ]
            .map(String::from),
        );
        let log = run_dir.join("postgres.log");
        let process = Watched::spawn("postgres (TLS)", &command, "QUIT", &log, Some(&run_dir));
        TlsPostgres { port, pki, process }
    }

    /// `postgres://postgres@<host>:<port>/postgres?<query>`.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// A redis-server listening on a TLS port only (no client certificates).
pub struct TlsRedis {
    pub port: u16,
    pub pki: TestPki,
    process: Watched,
}

impl TlsRedis {
    pub fn start() -> TlsRedis {
        let binary = process::find_binary("redis-server", &["/usr/bin/redis-server"])
            .expect("redis-server (bash scripts/test.sh installs it)");
        let dir = process::fresh_dir(&process::scratch_root(), "penguin-e2e-redistls");
        let pki = TestPki::create(&dir);
        let port = free_port();
        let command = [
            path_str(&binary),
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--tls-cert-file".into(),
            path_str(&pki.cert_file),
            "--tls-key-file".into(),
            path_str(&pki.key_file),
            "--tls-ca-cert-file".into(),
            path_str(&pki.ca_file),
            "--tls-auth-clients".into(),
            "no".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            path_str(&dir),
        ];
        let log = dir.join("redis.log");
        let process = Watched::spawn("redis-server (TLS)", &command, "KILL", &log, Some(&dir));
        TlsRedis { port, pki, process }
    }

    /// `rediss://<host>:<port>`.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
