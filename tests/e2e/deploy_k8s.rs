//! Deployment files scenario (issue 20): `deploy/k8s/`, read and held to the
//! code (no Kubernetes here). One namespace; the Deployment runs a real
//! subcommand with the ConfigMap's file at `--config`, which parses with the
//! Secret's variables and `node.id` from the pod name; the example secrets are
//! refused. Probes use `/health/ready` (readiness) and `/health/live`
//! (liveness, startup) on the API port, Prometheus annotations point at
//! `/metrics` there, preStop drains the node through `POST
//! /v1/nodes/{id}/drain` with the admin token, and the grace period exceeds the
//! longest drain (heartbeat + hand-off timeout + listener stop, read from the
//! code), which the README states. The Service `penguin` and the budget select
//! the pods.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::support::deploy_text::{
    assert_env_names, assert_secrets_refused_then_valid, check_cli, effective_config, flag_value,
    port_of, read, secs_on_line, served, y_str, y_strings, yaml_docs,
};

#[test]
fn kubernetes_manifests_are_consistent() {
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for file in [
        "namespace",
        "configmap",
        "secret",
        "deployment",
        "service",
        "pdb",
    ] {
        let rel = format!("deploy/k8s/{file}.yaml");
        for doc in yaml_docs(&rel, &read(&rel)) {
            let kind = y_str(&doc, "kind")
                .unwrap_or_else(|| panic!("{rel}: no kind"))
                .to_string();
            by_kind.entry(kind).or_default().push(doc);
        }
    }
    let one =
        |kind: &str| -> &Value { &by_kind.get(kind).unwrap_or_else(|| panic!("no {kind}"))[0] };
    let namespace = y_str(&one("Namespace")["metadata"], "name").expect("namespace name");
    for doc in by_kind
        .iter()
        .filter(|(k, _)| k.as_str() != "Namespace")
        .flat_map(|(_, d)| d)
    {
        assert_eq!(
            y_str(&doc["metadata"], "namespace"),
            Some(namespace),
            "{doc:?}"
        );
    }

    let deployment = one("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let container = &pod["containers"][0];
    let args = y_strings(&container["args"]);
    check_cli("deployment args", &args);

    // The config file: the ConfigMap's, mounted where --config points.
    let config_at = flag_value(&args, "--config").expect("--config");
    let mount = container["volumeMounts"]
        .as_sequence()
        .and_then(|m| {
            m.iter()
                .find(|m| y_str(m, "mountPath") == Some(config_at.as_str()))
        })
        .expect("a volume mounted at --config");
    let key = y_str(mount, "subPath").expect("the mount names its key");
    let volume = pod["volumes"]
        .as_sequence()
        .and_then(|v| v.iter().find(|v| y_str(v, "name") == y_str(mount, "name")))
        .expect("the mount's volume");
    let configmap = one("ConfigMap");
    assert_eq!(
        y_str(&volume["configMap"], "name"),
        y_str(&configmap["metadata"], "name")
    );
    let file = y_str(&configmap["data"], key).expect("the ConfigMap holds the key");

    // The environment: the Secret's values plus node.id from the pod name.
    let secret = one("Secret");
    let from = container["envFrom"][0]["secretRef"]["name"].as_str();
    assert_eq!(
        from,
        y_str(&secret["metadata"], "name"),
        "envFrom the Secret"
    );
    let mut env: BTreeMap<String, String> = secret["stringData"]
        .as_mapping()
        .expect("stringData")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap_or_default().into(),
                v.as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    for var in container["env"].as_sequence().expect("env") {
        let name = y_str(var, "name").expect("env name");
        let value = match y_str(var, "value") {
            Some(value) => value.to_string(),
            None => {
                assert_eq!(
                    y_str(&var["valueFrom"]["fieldRef"], "fieldPath"),
                    Some("metadata.name")
                );
                "penguin-6f7c9d8b5-x2x7q".to_string() // a pod name
            }
        };
        env.insert(name.to_string(), value);
    }
    assert!(
        env.contains_key("PENGUIN_NODE__ID"),
        "node.id comes from the pod"
    );
    assert_env_names("deployment", &env);
    let config = effective_config(file, &env).unwrap_or_else(|e| panic!("ConfigMap + Secret: {e}"));
    assert_secrets_refused_then_valid("k8s", file, &env);

    // Ports, probes and the scrape annotations point at the listeners.
    let port = |name: &str| -> u16 {
        container["ports"]
            .as_sequence()
            .and_then(|p| p.iter().find(|p| y_str(p, "name") == Some(name)))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    let api = port("api");
    assert_eq!(api, port_of(&config.api.listen));
    assert_eq!(port("public"), port_of(&config.public.listen));
    for (probe, path) in [
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
        ("startupProbe", "/health/live"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(y_str(get, "path"), Some(path), "{probe}");
        assert_eq!(y_str(get, "port"), Some("api"), "{probe}");
        assert!(served("GET", path), "{probe}: GET {path} is not served");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        y_str(annotations, "prometheus.io/port"),
        Some(api.to_string().as_str())
    );
    let scrape = y_str(annotations, "prometheus.io/path").expect("scrape path");
    assert!(served("GET", scrape), "scrape path {scrape} is not served");

    // preStop drains this node through its own API, with the admin token.
    let pre_stop = y_strings(&container["lifecycle"]["preStop"]["exec"]["command"]).join(" ");
    assert!(served("POST", "/v1/nodes/{id}/drain"));
    for part in [
        format!("http://127.0.0.1:{api}"),
        "/v1/nodes/$PENGUIN_NODE__ID/drain".to_string(),
        "Bearer $PENGUIN_API__ADMIN_TOKEN".to_string(),
        "/health/live".to_string(),
    ] {
        assert!(pre_stop.contains(&part), "preStop lacks {part}: {pre_stop}");
    }

    // The grace period covers the longest drain: the request is seen at the next
    // heartbeat, SMTP under way gets the hand-off timeout, then the listeners stop.
    let drain_secs = config.node.heartbeat_ms.div_ceil(1000)
        + secs_on_line("actors/src/handoff.rs", "const DRAIN_TIMEOUT")
        + secs_on_line("src/node.rs", "self.api_task");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("a grace period");
    assert!(
        grace > drain_secs,
        "terminationGracePeriodSeconds {grace} <= a drain's {drain_secs} s"
    );
    assert!(
        read("README.md").contains(&format!("{drain_secs} s")),
        "README.md states the drain time ({drain_secs} s)"
    );

    // Services and the budget select the pods; the Service is `penguin`.
    let ports: BTreeSet<&str> = ["api", "public"].into();
    let services = &by_kind["Service"];
    assert!(
        services
            .iter()
            .any(|s| y_str(&s["metadata"], "name") == Some("penguin"))
    );
    for service in services {
        assert_eq!(&service["spec"]["selector"], labels);
        for p in service["spec"]["ports"].as_sequence().expect("ports") {
            assert!(ports.contains(y_str(p, "targetPort").unwrap_or_default()));
        }
    }
    assert_eq!(
        &one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        labels
    );
}
