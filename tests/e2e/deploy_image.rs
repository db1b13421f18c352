//! Deployment files scenario (issue 20): the image. Docker is not available
//! here, so `deploy/Dockerfile` is read and held to the code: it builds the
//! binary of the root package (`--release --locked --bin`) with a Rust new
//! enough for `rust-version`, its entrypoint is that binary, it runs as a
//! non-root user, its command is a real `penguin` subcommand with real flags
//! (run with `--help`) and the config file it names ships in the image and
//! parses. The API serves the probe and scrape paths every deployment uses.

use penguin_config::Config;

use crate::support::deploy_text::{check_cli, flag_value, read, repo, served};

#[test]
fn dockerfile_runs_the_binary_cargo_builds() {
    let text = read("deploy/Dockerfile");
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions: Vec<(&str, &str)> = joined
        .lines()
        .filter_map(|l| l.trim().split_once(char::is_whitespace))
        .collect();
    let all = |word: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(w, _)| w.eq_ignore_ascii_case(word))
            .map(|(_, rest)| rest.trim())
            .collect()
    };
    let json_args = |word: &str| -> Vec<String> {
        let found = all(word);
        let last = found.last().unwrap_or_else(|| panic!("no {word}"));
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{word} is not exec form: {e}"))
    };

    // The root package builds one binary, named after it.
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let package = manifest["package"]["name"].as_str().expect("package.name");
    assert!(manifest.get("bin").is_none() && repo().join("src/main.rs").exists());
    let rust_version = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("rust-version");

    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    let builder = froms[0].split_whitespace().next().unwrap_or_default();
    let tag = builder
        .strip_prefix("rust:")
        .expect("the build stage is an official rust image");
    let version = tag.split('-').next().unwrap_or_default();
    assert!(
        version == "1" || version_at_least(version, rust_version),
        "rust:{tag} may be older than rust-version {rust_version}"
    );

    let build = all("RUN")
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    let words: Vec<String> = build.split_whitespace().map(String::from).collect();
    for flag in ["--release", "--locked"] {
        assert!(
            words.iter().any(|w| w == flag),
            "cargo build without {flag}: {build}"
        );
    }
    assert_eq!(
        flag_value(&words, "--bin").as_deref(),
        Some(package),
        "cargo build --bin"
    );
    assert!(build.contains(&format!("target/release/{package} ")));

    let entrypoint = json_args("ENTRYPOINT");
    assert_eq!(entrypoint, [format!("/usr/local/bin/{package}")]);
    assert!(
        all("COPY")
            .iter()
            .any(|c| c.starts_with("--from=builder") && c.ends_with(&entrypoint[0])),
        "the entrypoint is copied from the build stage"
    );
    let user = all("USER");
    let user = user.last().expect("a USER");
    assert!(!["root", "0", "0:0"].contains(user), "runs as root");

    let cmd = json_args("CMD");
    check_cli("Dockerfile CMD", &cmd);
    let config_at = flag_value(&cmd, "--config").expect("CMD names a --config");
    let shipped = all("COPY")
        .into_iter()
        .find(|c| c.ends_with(&config_at))
        .expect("the image has the file CMD names");
    let source = shipped.split_whitespace().next().unwrap_or_default();
    Config::from_toml_str(&read(source)).unwrap_or_else(|e| panic!("{source}: {e}"));

    // The build context leaves out target/ but keeps what the build reads.
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns.contains(&"target"),
        ".dockerignore keeps target/ out"
    );
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    let needed = [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "migrations",
        "benches",
        source,
    ]
    .into_iter()
    .chain(members.iter().filter_map(toml::Value::as_str));
    for path in needed {
        assert!(repo().join(path).exists(), "{path} is missing");
        assert!(
            !patterns
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/"))),
            ".dockerignore leaves {path} out of the build"
        );
    }
}

fn version_at_least(version: &str, minimum: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    parse(version) >= parse(minimum)
}

#[test]
fn probe_paths_are_served() {
    for path in ["/health/ready", "/health/live", "/metrics"] {
        assert!(served("GET", path), "GET {path} is not served by the API");
    }
}
