//! Deployment files scenario (issue 20): `deploy/compose.yaml`, read and held to
//! the code (no Docker here). Every variable it needs is in `.env.example`;
//! every `penguin` service runs a real subcommand with real flags, its mounted
//! config plus its environment parses, and every `PENGUIN_*` name is a
//! `PENGUIN_<SECTION>__<KEY>` key; the example secrets are refused and random
//! ones accepted. Two or more nodes with distinct `node.id` and ports, each
//! routed to the sink and health-checked on `/health/ready`; Prometheus scrapes
//! exactly their API listeners and loads the alerts; Grafana's provider reads
//! the folder the dashboard is mounted in.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::support::deploy_text::{
    assert_env_names, assert_secrets_refused_then_valid, check_cli, dotenv, effective_config,
    flag_value, interpolate, port_of, read, repo, served, y_str, y_strings, yaml_docs,
};

/// A compose service's `environment` (a mapping) as strings.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    service
        .get("environment")
        .and_then(Value::as_mapping)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap_or_default(),
                    };
                    (
                        k.as_str().unwrap_or_default().to_string(),
                        value.trim().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_cluster_is_consistent() {
    let example = read("deploy/.env.example");
    let vars = dotenv(&example);
    let text = interpolate(&read("deploy/compose.yaml"), &vars)
        .unwrap_or_else(|e| panic!("deploy/compose.yaml needs a variable .env.example lacks: {e}"));
    let compose = yaml_docs("compose.yaml", &text).remove(0);
    let services = compose["services"].as_mapping().expect("services");
    let service = |name: &str| -> &Value {
        compose["services"]
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    };
    for name in [
        "postgres",
        "redis",
        "migrate",
        "sink",
        "prometheus",
        "grafana",
    ] {
        service(name);
    }

    // Bind mounts: every source exists; remember what each penguin path holds.
    let mounts = |svc: &Value| -> BTreeMap<String, String> {
        y_strings(&svc["volumes"])
            .iter()
            .filter(|v| v.starts_with("./"))
            .map(|v| {
                let parts: Vec<&str> = v.split(':').collect();
                let source = format!("deploy/{}", &parts[0][2..]);
                assert!(
                    repo().join(&source).exists(),
                    "{source} is mounted but missing"
                );
                (parts[1].to_string(), source)
            })
            .collect()
    };

    let sink_args = y_strings(&service("sink")["command"]);
    check_cli("compose sink", &sink_args);
    let sink_smtp = flag_value(&sink_args, "--listen").expect("sink --listen");
    let aliases: BTreeSet<String> = y_strings(&service("sink")["networks"]["default"]["aliases"])
        .into_iter()
        .collect();

    let mut nodes = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        if y_str(svc, "image") != y_str(service("migrate"), "image") || name == "sink" {
            continue;
        }
        let args = y_strings(&svc["command"]);
        check_cli(&format!("compose {name}"), &args);
        let env = compose_env(svc);
        assert_env_names(&format!("compose {name}"), &env);
        let file_at = flag_value(&args, "--config").expect("--config");
        let file = mounts(svc)
            .remove(&file_at)
            .unwrap_or_else(|| panic!("compose {name}: nothing mounted at {file_at}"));
        let config = effective_config(&read(&file), &env)
            .unwrap_or_else(|e| panic!("compose {name}: {file} + environment: {e}"));
        if args[0] == "serve" {
            assert_secrets_refused_then_valid(&format!("compose {name}"), &read(&file), &env);
            nodes.push((name.to_string(), svc, config));
        }
    }
    assert!(nodes.len() >= 2, "two or more engine nodes");

    let mut ids = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for (name, svc, config) in &nodes {
        assert!(
            ids.insert(config.node.id.clone()),
            "node.id {} twice",
            config.node.id
        );
        // The nodes share the sink's network namespace: ports must differ.
        assert_eq!(y_str(svc, "network_mode"), Some("service:sink"), "{name}");
        let api = port_of(&config.api.listen);
        assert!(
            ports.insert(api) && ports.insert(port_of(&config.public.listen)),
            "{name}: a port twice"
        );
        for route in &config.delivery.routes {
            assert_eq!(
                format!("{}:{}", route.host, route.port),
                sink_smtp,
                "{name}: route"
            );
        }
        assert!(
            !config.delivery.routes.is_empty(),
            "{name} sends to the sink only"
        );
        let check = y_strings(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            check.contains(&format!("http://127.0.0.1:{api}/health/ready")),
            "{name}: healthcheck {check}"
        );
        assert!(aliases.contains(name), "{name} is not an alias of the sink");
        targets.insert(format!("{name}:{api}"));
    }

    // Prometheus scrapes exactly the nodes' API listeners and loads the alerts.
    let prometheus_mounts = mounts(service("prometheus"));
    let prometheus =
        yaml_docs("prometheus.yml", &read("deploy/prometheus/prometheus.yml")).remove(0);
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .and_then(|jobs| {
            jobs.iter()
                .find(|j| y_str(j, "job_name") == Some("penguin"))
        })
        .expect("a scrape job named penguin (PenguinNodeDown reads up{job=\"penguin\"})");
    let path = y_str(job, "metrics_path").unwrap_or("/metrics");
    assert!(served("GET", path), "scrape path {path} is not served");
    let scraped: BTreeSet<String> = job["static_configs"]
        .as_sequence()
        .expect("static_configs")
        .iter()
        .flat_map(|c| y_strings(&c["targets"]))
        .collect();
    assert_eq!(
        scraped, targets,
        "Prometheus scrapes every node's [api] listen"
    );
    for rules in y_strings(&prometheus["rule_files"]) {
        let source = prometheus_mounts
            .get(&rules)
            .unwrap_or_else(|| panic!("{rules} is not mounted"));
        assert_eq!(source, "deploy/prometheus/alerts.yaml");
    }

    // Grafana: the provisioned provider reads the folder the dashboard is mounted in.
    let grafana = mounts(service("grafana"));
    let dashboard_at = grafana
        .iter()
        .find(|(_, source)| source.as_str() == "deploy/grafana/penguin.json")
        .map(|(target, _)| target.clone())
        .expect("penguin.json is mounted");
    let provider = yaml_docs(
        "provider",
        &read("deploy/grafana/provisioning/dashboards/penguin.yaml"),
    )
    .remove(0);
    let folder = y_str(&provider["providers"][0]["options"], "path").expect("provider path");
    assert_eq!(dashboard_at, format!("{folder}/penguin.json"));
    // Last: the health checks' path (the route issue 20 adds to the API).
    assert!(
        served("GET", "/health/ready"),
        "GET /health/ready (the nodes' health check) is not served"
    );
}
