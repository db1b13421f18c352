//! TLS to Postgres as `DATABASE_URL` asks for it, with libpq's names:
//! `sslmode` = `disable` | `prefer` | `require` | `verify-ca` | `verify-full`
//! and `sslrootcert` = a PEM file of trusted CA certificates, or `system` for
//! the operating system's store (libpq 16's spelling).
//!
//! Without `sslmode` the connection is plain, as it always was here (libpq
//! would `prefer`): TLS is used when the URL asks for it. As in libpq,
//! `prefer` and `require` encrypt without checking
//! the server's certificate, unless `sslrootcert` is given, in which case
//! `require` checks it as `verify-ca` does; `verify-ca` checks that a trusted CA
//! signed it; `verify-full` also checks that it names the host connected to.
//! The Postgres driver only knows `disable`, `prefer` and `require`, so
//! [`DatabaseConfig::tls`] hands it the URL with the two keys rewritten, and the
//! engine builds the certificate check from [`PgTls`].

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::sections::DatabaseConfig;

/// How the connection to Postgres is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgSslMode {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        Ok(match value {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            other => {
                return Err(ConfigError::invalid(
                    "database.url",
                    format!(
                        "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                    ),
                ));
            }
        })
    }

    /// The mode the driver is given (it negotiates; the check is ours).
    fn driver(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            _ => "require",
        }
    }
}

/// Whose certificates the server's must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgRoots {
    /// The operating system's trust store.
    System,
    /// The CA certificates of a PEM file.
    File(PathBuf),
}

/// What [`DatabaseConfig::tls`] found in the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: PgSslMode,
    /// `Some` when the certificate is checked: always for `verify-*`, and for
    /// `require` given `sslrootcert`.
    pub roots: Option<PgRoots>,
    /// Whether the certificate must name the host (`verify-full`).
    pub check_host: bool,
    /// The URL for the driver: `sslmode` mapped to what it knows, `sslrootcert` removed.
    pub driver_url: String,
}

impl DatabaseConfig {
    /// Reads `sslmode` and `sslrootcert` from the URL (either form); see the module doc.
    pub fn tls(&self) -> Result<PgTls, ConfigError> {
        let (pairs, rebuild): (Vec<(String, String)>, Form) = if is_url(&self.url) {
            split_url(&self.url)?
        } else {
            split_key_values(&self.url)
        };
        let mut mode = PgSslMode::Disable;
        let mut root_cert = None;
        let mut kept = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => mode = PgSslMode::parse(&value)?,
                "sslrootcert" => {
                    if value.is_empty() {
                        return Err(ConfigError::invalid(
                            "database.url",
                            "sslrootcert must name a PEM file or be `system`",
                        ));
                    }
                    root_cert = Some(if value == "system" {
                        PgRoots::System
                    } else {
                        PgRoots::File(PathBuf::from(value))
                    });
                }
                _ => kept.push((key, value)),
            }
        }
        kept.push(("sslmode".into(), mode.driver().into()));
        let roots = match mode {
            PgSslMode::Disable | PgSslMode::Prefer => None,
            PgSslMode::Require => root_cert,
            PgSslMode::VerifyCa | PgSslMode::VerifyFull => {
                Some(root_cert.unwrap_or(PgRoots::System))
            }
        };
        Ok(PgTls {
            mode,
            roots,
            check_host: mode == PgSslMode::VerifyFull,
            driver_url: rebuild.join(&kept),
        })
    }
}

fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// How to put the other parameters back.
enum Form {
    Url(url::Url),
    KeyValues,
}

impl Form {
    fn join(self, pairs: &[(String, String)]) -> String {
        match self {
            Form::Url(mut url) => {
                url.query_pairs_mut().clear().extend_pairs(pairs);
                url.to_string()
            }
            Form::KeyValues => pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn split_url(text: &str) -> Result<(Vec<(String, String)>, Form), ConfigError> {
    let url = url::Url::parse(text)
        .map_err(|e| ConfigError::invalid("database.url", format!("not a URL: {e}")))?;
    let pairs = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((pairs, Form::Url(url)))
}

/// `key=value` words; a value may be single-quoted with `\'` and `\\` escapes.
fn split_key_values(text: &str) -> (Vec<(String, String)>, Form) {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=');
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\'' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        pairs.push((key, value));
    }
    (pairs, Form::KeyValues)
}

fn quote(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<PgTls, ConfigError> {
        DatabaseConfig {
            url: url.into(),
            ..DatabaseConfig::default()
        }
        .tls()
    }

    #[test]
    fn no_sslmode_is_plain() {
        let plain = tls("postgres://u:p@db:5432/penguin").unwrap();
        assert_eq!(plain.mode, PgSslMode::Disable);
        assert_eq!(plain.roots, None);
        assert_eq!(
            plain.driver_url,
            "postgres://u:p@db:5432/penguin?sslmode=disable"
        );
        let prefer = tls("postgres://db/p?sslmode=prefer").unwrap();
        assert_eq!((prefer.mode, prefer.roots), (PgSslMode::Prefer, None));
    }

    #[test]
    fn verify_full_with_a_ca_file_is_rewritten_for_the_driver() {
        let tls =
            tls("postgres://u@db/penguin?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(tls.mode, PgSslMode::VerifyFull);
        assert!(tls.check_host);
        assert_eq!(tls.roots, Some(PgRoots::File("/etc/ca.pem".into())));
        assert_eq!(
            tls.driver_url,
            "postgres://u@db/penguin?application_name=x&sslmode=require"
        );
    }

    #[test]
    fn verify_ca_defaults_to_the_system_store_and_skips_the_host() {
        let tls = tls("postgresql://db/penguin?sslmode=verify-ca").unwrap();
        assert_eq!(tls.roots, Some(PgRoots::System));
        assert!(!tls.check_host);
    }

    #[test]
    fn require_checks_only_when_given_roots() {
        assert_eq!(tls("postgres://db/p?sslmode=require").unwrap().roots, None);
        assert_eq!(
            tls("postgres://db/p?sslmode=require&sslrootcert=system")
                .unwrap()
                .roots,
            Some(PgRoots::System)
        );
    }

    #[test]
    fn key_value_form() {
        let tls = tls("host=/run/pg dbname='my db' sslmode=verify-full sslrootcert='/a b/ca.pem'")
            .unwrap();
        assert_eq!(tls.roots, Some(PgRoots::File("/a b/ca.pem".into())));
        assert_eq!(
            tls.driver_url,
            "host=/run/pg dbname='my db' sslmode=require"
        );
    }

    #[test]
    fn an_unknown_sslmode_is_named() {
        let err = tls("postgres://db/p?sslmode=allow-ish")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database.url") && err.contains("allow-ish"),
            "{err}"
        );
    }
}
