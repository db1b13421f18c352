//! Readers for the deployment files under `deploy/` (`deploy_files` checks
//! them): the repository's files, Docker compose interpolation, `.env` files,
//! the effective [`Config`] a container gets from a mounted file plus its
//! environment and the checks on it, the API's routes, and the `penguin`
//! command line itself. The metric names are in `deploy_metrics`.
//!
//! Nothing here starts a service: Docker and Kubernetes are not available on
//! these machines, so the files are read and compared with the code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use penguin_api::openapi::{Route, routes_of};
use penguin_config::{Config, random_master_key, random_secret};

/// The repository root (the root package's manifest directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text of `rel` (relative to the repository root); panics naming it.
pub fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every YAML document of `text` (`---` separated); panics naming `what`.
pub fn yaml_docs(what: &str, text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
        })
        .collect()
}

/// The string at `key` of a YAML mapping, if any.
pub fn y_str<'a>(value: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(serde_yaml::Value::as_str)
}

/// A YAML sequence of strings (a compose `command`, a container's `args`).
pub fn y_strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A `.env` file: `NAME=value` lines; blank lines and `#` comments skipped.
pub fn dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// Docker compose interpolation: `$$`, `$NAME`, `${NAME}`, `${NAME:?msg}`,
/// `${NAME?msg}`, `${NAME:-default}` and `${NAME-default}` from `vars`. A
/// variable that is neither set nor defaulted is an error naming it.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let inner = &body[..end];
            let name_end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, modifier) = inner.split_at(name_end);
            let value = vars.get(name).filter(|v| !v.is_empty());
            let default = modifier
                .strip_prefix(":-")
                .or_else(|| modifier.strip_prefix('-'));
            match (value, default) {
                (Some(value), _) => out.push_str(value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("${{{name}}} is not set (no default)")),
            }
            rest = &body[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            let value = vars
                .get(name)
                .ok_or_else(|| format!("${name} is not set"))?;
            out.push_str(value);
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The config key path an environment variable names, as `Config::load` reads
/// it (`PENGUIN_API__ADMIN_TOKEN` → `["api", "admin_token"]`, `DATABASE_URL` →
/// `database.url`); `None` for a name that is not a config variable.
pub fn config_key_of(env_name: &str) -> Option<Vec<String>> {
    match env_name {
        "DATABASE_URL" => return Some(vec!["database".into(), "url".into()]),
        "REDIS_URL" => return Some(vec!["redis".into(), "url".into()]),
        _ => {}
    }
    let rest = env_name.strip_prefix("PENGUIN_")?;
    rest.contains("__")
        .then(|| rest.split("__").map(str::to_ascii_lowercase).collect())
}

/// The configuration a node gets from the TOML `file` plus `env` (the
/// container's variables): each variable becomes its key, its value read as a
/// TOML value when it is one (numbers, booleans) and as a string otherwise,
/// like the engine's environment layer. Only settings are checked (not the
/// secrets): [`Config::validate`] on the result checks those.
pub fn effective_config(file: &str, env: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut doc: toml::Table = toml::from_str(file).map_err(|e| format!("not TOML: {e}"))?;
    for (name, raw) in env {
        let Some(path) = config_key_of(name) else {
            continue;
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let (last, parents) = path.split_last().expect("a key has a name");
        let mut table = &mut doc;
        for part in parents {
            table = table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| format!("{name}: {part} is not a section"))?;
        }
        table.insert(last.clone(), value);
    }
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Config::from_toml_str(&text).map_err(|e| e.to_string())
}

/// The port of a `host:port` listen address.
pub fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{listen:?} has no port"))
}

/// Checks `args` against the real command line: `penguin <subcommand> --help`
/// must succeed and list every `--flag` of `args`.
pub fn check_cli(what: &str, args: &[String]) {
    let subcommand = args
        .first()
        .unwrap_or_else(|| panic!("{what}: no subcommand"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_penguin"))
        .args([subcommand.as_str(), "--help"])
        .output()
        .expect("run penguin --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what}: `penguin {subcommand}` is not a subcommand: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{what}: `penguin {subcommand}` has no flag {flag}:\n{help}"
        );
    }
}

/// The number `N` of the first `Duration::from_secs(N)` on the line of `file`
/// that contains `marker`; panics naming both when there is none.
pub fn secs_on_line(file: &str, marker: &str) -> u64 {
    read(file)
        .lines()
        .find(|line| line.contains(marker))
        .and_then(|line| line.split_once("Duration::from_secs("))
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.trim().replace('_', "").parse().ok())
        .unwrap_or_else(|| {
            panic!("{file}: no `Duration::from_secs(N)` on the line with `{marker}`")
        })
}

/// The value after `flag` in `args`.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|at| args.get(at + 1))
        .cloned()
}

/// The secrets `Config::validate` requires or checks, by environment variable.
pub const SECRETS: [(&str, &str); 3] = [
    ("PENGUIN_API__ADMIN_TOKEN", "api.admin_token"),
    ("PENGUIN_TRACKING__SECRET", "tracking.secret"),
    ("PENGUIN_SECRETS__MASTER_KEY", "secrets.master_key"),
];

pub fn served(method: &str, path: &str) -> bool {
    routes_of(&penguin_api::openapi()).contains(&Route {
        method: match method {
            "GET" => "GET",
            "POST" => "POST",
            other => panic!("method {other}"),
        },
        path: path.to_string(),
    })
}

/// Every `PENGUIN_*` name is a `PENGUIN_<SECTION>__<KEY>` config key.
pub fn assert_env_names(what: &str, env: &BTreeMap<String, String>) {
    for name in env.keys().filter(|n| n.starts_with("PENGUIN_")) {
        assert!(
            config_key_of(name).is_some(),
            "{what}: {name} is not PENGUIN_<SECTION>__<KEY>"
        );
    }
}

/// The placeholders in `env` are refused, each naming its key; random secrets
/// in their place make the whole configuration valid.
pub fn assert_secrets_refused_then_valid(what: &str, file: &str, env: &BTreeMap<String, String>) {
    let mut real = env.clone();
    real.insert(SECRETS[0].0.into(), random_secret());
    real.insert(SECRETS[1].0.into(), random_secret());
    real.insert(SECRETS[2].0.into(), random_master_key());
    let config = effective_config(file, &real).unwrap_or_else(|e| panic!("{what}: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("{what} with random secrets: {e}"));
    for (name, key) in SECRETS {
        let placeholder = env
            .get(name)
            .unwrap_or_else(|| panic!("{what}: {name} is not set"));
        let mut one = real.clone();
        one.insert(name.into(), placeholder.clone());
        let err = effective_config(file, &one)
            .and_then(|c| c.validate().map_err(|e| e.to_string()))
            .expect_err(&format!(
                "{what}: the placeholder {name}={placeholder} is accepted"
            ));
        assert!(err.contains(key), "{what}: {name}: {err}");
    }
}
