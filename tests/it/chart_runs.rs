//! The chart runs: the small distributed preset of `helm/strata`, rendered
//! by a real helm, started as it would run on Kubernetes, one local process
//! per rendered pod, each on its own 127.0.0.x address.
//!
//! Each process gets what its pod gets: the container's args (with
//! `$(POD_NAME)` and `$(POD_IP)` expanded), its env (field refs and the
//! rendered Secrets), and its volumes (the rendered ConfigMaps as files, a
//! directory per PVC), mounted where the pod mounts them by rewriting the
//! mount paths. Pod and Service DNS names resolve as in the cluster: every
//! process runs in a mount namespace (`unshare -m`) whose `/etc/hosts` maps
//! the pods' names, the headless Services' names (to every pod behind
//! them) and the Services' names to the test addresses. What the test adds:
//! listen addresses, since all pods share the host's network. The bundled
//! MinIO is replaced by moto (another S3 server) at the MinIO Service's
//! address. A real Prometheus, resolving through the same names, remote
//! writes to the distributor Service; its samples come back through the
//! querier. Then the compactor StatefulSet (the Raft voters) is rendered
//! with 3 replicas: the configuration is unchanged, the new pods join the
//! group by themselves, and one is removed again. Every metric the chart's
//! alert rules read is exported by the running pods.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::helm::{chart, render};

const NAMESPACE: &str = "default";

/// A rendered pod, to be run as a process.
#[derive(Clone)]
struct Pod {
    name: String,
    ip: String,
    labels: BTreeMap<String, String>,
    /// The pod template it comes from.
    template: Yaml,
    /// `serviceName` of its StatefulSet (its DNS subdomain).
    subdomain: Option<String>,
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn map_of(y: &Yaml) -> BTreeMap<String, String> {
    y.as_mapping()
        .map(|m| m.iter().map(|(k, v)| (str_of(k), str_of(v))).collect())
        .unwrap_or_default()
}

fn manifests_of<'a>(all: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    all.iter().filter(|m| m["kind"] == kind).collect()
}

fn named<'a>(all: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    all.iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The pods the workloads of `manifests` create, numbered from `first_ip`.
fn pods_of(manifests: &[Yaml], first_ip: u8) -> Vec<Pod> {
    let mut pods = Vec::new();
    let mut ip = first_ip;
    for kind in ["StatefulSet", "Deployment"] {
        for w in manifests_of(manifests, kind) {
            let name = str_of(&w["metadata"]["name"]);
            let replicas = w["spec"]["replicas"].as_u64().unwrap_or(1);
            for i in 0..replicas {
                pods.push(Pod {
                    // Deployments' pods have random suffixes; any will do.
                    name: format!("{name}-{i}"),
                    ip: format!("127.0.0.{ip}"),
                    labels: map_of(&w["spec"]["template"]["metadata"]["labels"]),
                    template: w["spec"]["template"].clone(),
                    subdomain: (kind == "StatefulSet").then(|| str_of(&w["spec"]["serviceName"])),
                });
                ip += 1;
            }
        }
    }
    pods
}

/// `/etc/hosts` of the emulated cluster: pod names, headless Services (every
/// pod behind them) and Services (their one pod here).
fn hosts_file(manifests: &[Yaml], pods: &[Pod]) -> String {
    let mut lines = vec!["127.0.0.1 localhost".to_string()];
    for p in pods {
        if let Some(sub) = &p.subdomain {
            lines.push(format!(
                "{} {}.{sub}.{NAMESPACE}.svc.cluster.local",
                p.ip, p.name
            ));
        }
    }
    for svc in manifests_of(manifests, "Service") {
        let name = str_of(&svc["metadata"]["name"]);
        let selector = map_of(&svc["spec"]["selector"]);
        let behind: Vec<&Pod> = pods
            .iter()
            .filter(|p| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .collect();
        for p in behind {
            lines.push(format!(
                "{} {name} {name}.{NAMESPACE} {name}.{NAMESPACE}.svc {name}.{NAMESPACE}.svc.cluster.local",
                p.ip
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// Runs `program` in a mount namespace whose /etc/hosts is `hosts`.
fn in_cluster_dns(hosts: &Path, program: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/hosts && exec "$@""#,
    ])
    .arg(hosts)
    .arg(program);
    cmd
}

/// Starts the strata container of `pod` with its args, env and volumes.
fn start_pod(pod: &Pod, manifests: &[Yaml], root: &Path, hosts: &Path) -> Running {
    let dir = root.join(&pod.name);
    std::fs::create_dir_all(&dir).expect("pod dir");
    let spec = &pod.template["spec"];
    let container = spec["containers"]
        .as_sequence()
        .and_then(|c| c.iter().find(|c| c["name"] == "strata"))
        .unwrap_or_else(|| panic!("{}: no strata container", pod.name));
    // Volumes: where each is mounted, and a local directory standing for it.
    let mut mounts: Vec<(String, PathBuf)> = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|m| {
            let vol = str_of(&m["name"]);
            (str_of(&m["mountPath"]), dir.join(format!("vol-{vol}")))
        })
        .collect();
    // Longest first, so /data/x is rewritten before /data.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let remount = |text: &str| {
        let mut out = text.to_string();
        for (path, local) in &mounts {
            out = out.replace(path.as_str(), local.to_str().expect("utf-8 path"));
        }
        out
    };
    for (path, local) in &mounts {
        std::fs::create_dir_all(local).expect("volume dir");
        let name = container["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|m| str_of(&m["mountPath"]) == *path)
            .map(|m| str_of(&m["name"]))
            .unwrap_or_default();
        let volume = spec["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| str_of(&v["name"]) == name);
        if let Some(cm) = volume.map(|v| &v["configMap"]).filter(|c| !c.is_null()) {
            let data = &named(manifests, "ConfigMap", &str_of(&cm["name"]))["data"];
            for (file, content) in map_of(data) {
                std::fs::write(local.join(file), remount(&content)).expect("config file");
            }
        }
    }
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in container["envFrom"].as_sequence().into_iter().flatten() {
        let secret = named(manifests, "Secret", &str_of(&e["secretRef"]["name"]));
        env.extend(map_of(&secret["stringData"]));
    }
    for e in container["env"].as_sequence().into_iter().flatten() {
        let value = match str_of(&e["valueFrom"]["fieldRef"]["fieldPath"]).as_str() {
            "metadata.name" => pod.name.clone(),
            "status.podIP" => pod.ip.clone(),
            "" => str_of(&e["value"]),
            other => panic!("{}: unexpected field ref {other}", pod.name),
        };
        env.insert(str_of(&e["name"]), value);
    }
    let mut args: Vec<String> = container["args"]
        .as_sequence()
        .expect("container args")
        .iter()
        .map(|a| {
            let mut a = remount(&str_of(a));
            for (k, v) in &env {
                a = a.replace(&format!("$({k})"), v);
            }
            a
        })
        .collect();
    // A pod has an address of its own; here they share the host's network.
    args.push(format!("-server.http-listen-address={}", pod.ip));
    args.push(format!("-server.grpc-listen-address={}", pod.ip));
    let log = std::fs::File::create(dir.join("log")).expect("pod log");
    let child = in_cluster_dns(hosts, Path::new(env!("CARGO_BIN_EXE_strata")))
        .args(&args)
        .current_dir(&dir)
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn a pod's strata (needs `unshare`)");
    Running(child)
}

fn pod_log(root: &Path, pod: &str) -> String {
    let text = std::fs::read_to_string(root.join(pod).join("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn poll_until<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn wait_until<F, Fut>(what: &str, secs: u64, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(secs, f).await, "timed out waiting for {what}");
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Json> {
    client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn voters(client: &reqwest::Client, http: &str) -> Vec<String> {
    get_json(client, &format!("{http}/ring/raft"))
        .await
        .and_then(|j| {
            j["voters"].as_array().map(|v| {
                v.iter()
                    .filter_map(|v| v[1].as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Newest timestamp (s) of Prometheus's own `up` sample, through the querier.
async fn newest_up(client: &reqwest::Client, querier: &str) -> Option<f64> {
    let j = get_json(
        client,
        &format!(
            "{querier}/prometheus/api/v1/query?query=timestamp(up%7Bjob%3D%22prometheus%22%7D)"
        ),
    )
    .await?;
    j["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_distributed_preset_runs_and_its_voters_scale() {
    let unshare = Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        unshare,
        "this test needs `unshare -m` (util-linux, run as root) to give each process the cluster's /etc/hosts"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let small = chart().join("values-small.yaml");
    let small = small.to_str().expect("path");
    // Debian's Prometheus 2.42 does not send remote_write `headers` (seen
    // on the wire), so it cannot name a tenant: single-tenant mode here.
    let manifests = render(&["-f", small, "--set", "multitenancyEnabled=false"])
        .expect("render the small preset");
    let http_port =
        named(&manifests, "Service", "t-strata-distributor")["spec"]["ports"][0]["port"]
            .as_u64()
            .expect("http port");

    // The pods, MinIO (moto standing for it) first.
    let mut pods = pods_of(&manifests, 101);
    let minio_at = pods
        .iter()
        .position(|p| p.name == "t-strata-minio-0")
        .expect("the small preset bundles MinIO");
    let minio = pods.remove(minio_at);
    let hosts = root.join("hosts");
    let with_minio = |pods: &[Pod]| {
        let mut all = pods.to_vec();
        all.push(minio.clone());
        all
    };
    std::fs::write(&hosts, hosts_file(&manifests, &with_minio(&pods))).expect("hosts");
    let bucket = str_of(&named(&manifests, "ConfigMap", "t-strata-config")["data"]["strata.yaml"]);
    let bucket: Yaml = serde_yaml::from_str(&bucket).expect("config yaml");
    let bucket = str_of(&bucket["blocks_storage"]["s3"]["bucket_name"]);
    let _moto = Running(
        Command::new("python3")
            .args(["-m", "moto.server", "-H", &minio.ip, "-p", "9000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (the README test command installs it)"),
    );
    let client = reqwest::Client::new();
    wait_until("moto and its bucket", 30, || {
        let url = format!("http://{}:9000/{bucket}", minio.ip);
        let client = client.clone();
        async move {
            client
                .put(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    for pod in &pods {
        running.insert(pod.name.clone(), start_pod(pod, &manifests, root, &hosts));
    }
    for pod in &pods {
        let url = format!("http://{}:{http_port}/ready", pod.ip);
        let c = client.clone();
        let ready = poll_until(120, || {
            let (c, url) = (c.clone(), url.clone());
            async move { c.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        assert!(
            ready,
            "pod {} not ready:\n{}",
            pod.name,
            pod_log(root, &pod.name)
        );
    }
    let ip_of = |name: &str| {
        pods.iter()
            .find(|p| p.name == name)
            .map(|p| format!("http://{}:{http_port}", p.ip))
            .unwrap_or_else(|| panic!("no pod {name}"))
    };
    let (distributor, querier) = (ip_of("t-strata-distributor-0"), ip_of("t-strata-querier-0"));

    // A real Prometheus writes to the distributor Service by name.
    let prom_dir = root.join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let prom_port = crate::common::free_port();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\n\
             scrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]\n\
             remote_write:\n  - url: http://t-strata-distributor.{NAMESPACE}.svc.cluster.local:{http_port}/api/v1/push\n    \
             queue_config: {{batch_send_deadline: 500ms}}\n"
        ),
    )
    .expect("prometheus config");
    let prometheus =
        std::env::var("STRATA_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let prometheus = which(&prometheus);
    let _prometheus = Running(
        in_cluster_dns(&hosts, &prometheus)
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prom_dir.join("log")).expect("log"))
            .spawn()
            .expect("the prometheus binary (the README test command installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let first = loop {
        if let Some(t) = newest_up(&client, &querier).await {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus's samples never came back through the querier:\n{}\n{}\n{}",
            pod_log(root, "t-strata-distributor-0"),
            pod_log(root, "t-strata-querier-0"),
            pod_log(root, "prometheus")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Every metric the chart's alert rules read is exported by some pod.
    let mut exported = String::new();
    for pod in &pods {
        let url = format!("http://{}:{http_port}/metrics", pod.ip);
        if let Ok(r) = client.get(&url).send().await {
            exported.push_str(&r.text().await.unwrap_or_default());
        }
    }
    // (The ruler's per-tenant counters appear with a tenant's first rule
    // group; tests/it/mixin.rs checks them, and every dashboard metric, on a
    // cluster with traffic and rules.)
    for (alert, expr) in crate::helm::chart_alerts() {
        for name in crate::helm::metric_names(&expr) {
            if name.starts_with("strata_ruler_evaluation") {
                continue;
            }
            assert!(
                exported
                    .lines()
                    .any(|l| l.starts_with(&name) && l[name.len()..].starts_with([' ', '{'])),
                "{alert} reads {name}, which no pod exports"
            );
        }
    }

    // One voter, the small preset's; the group's one seed is its name.
    assert_eq!(voters(&client, &distributor).await.len(), 1);

    // Three voters: the configuration does not change, two pods are added.
    let scaled = render(&[
        "-f",
        small,
        "--set",
        "multitenancyEnabled=false",
        "--set",
        "compactor.replicas=3",
    ])
    .expect("render 3 voters");
    assert_eq!(
        named(&scaled, "ConfigMap", "t-strata-config")["data"],
        named(&manifests, "ConfigMap", "t-strata-config")["data"],
        "scaling the voters changes no configuration"
    );
    let mut scaled_pods = pods_of(&scaled, 101);
    scaled_pods.retain(|p| p.name != "t-strata-minio-0");
    // Keep the running pods' addresses; the new ones get fresh ones.
    let mut next_ip = 150;
    for p in &mut scaled_pods {
        match pods.iter().find(|old| old.name == p.name) {
            Some(old) => p.ip = old.ip.clone(),
            None => {
                p.ip = format!("127.0.0.{next_ip}");
                next_ip += 1;
            }
        }
    }
    // Rewritten in place: the processes' bind mounts see the new names.
    std::fs::write(&hosts, hosts_file(&scaled, &with_minio(&scaled_pods))).expect("hosts");
    let new: Vec<&Pod> = scaled_pods
        .iter()
        .filter(|p| !running.contains_key(&p.name))
        .collect();
    assert_eq!(
        new.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["t-strata-compactor-1", "t-strata-compactor-2"]
    );
    for pod in &new {
        running.insert(pod.name.clone(), start_pod(pod, &scaled, root, &hosts));
    }
    let c = client.clone();
    let d = distributor.clone();
    let three = poll_until(120, || {
        let (c, d) = (c.clone(), d.clone());
        async move { voters(&c, &d).await.len() == 3 }
    })
    .await;
    assert!(
        three,
        "the new compactors never became voters: {:?}\n{}\n{}",
        voters(&client, &distributor).await,
        pod_log(root, "t-strata-compactor-1"),
        pod_log(root, "t-strata-compactor-2")
    );

    // Remove one (as before scaling down), then stop its pod.
    let gone = format!(
        "t-strata-compactor-2.t-strata-compactor-headless.{NAMESPACE}.svc.cluster.local:9095"
    );
    assert!(voters(&client, &distributor).await.contains(&gone));
    let r = client
        .post(format!("{distributor}/ring/raft"))
        .form(&[("remove", gone.as_str())])
        .send()
        .await
        .expect("remove a voter");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    running.remove("t-strata-compactor-2");
    let c = client.clone();
    let d = distributor.clone();
    wait_until("two voters", 60, || {
        let (c, d) = (c.clone(), d.clone());
        async move { voters(&c, &d).await.len() == 2 }
    })
    .await;
    assert!(!voters(&client, &distributor).await.contains(&gone));

    // Prometheus's writes went on all along and still arrive.
    let c = client.clone();
    let q = querier.clone();
    wait_until("newer samples after the voters changed", 60, || {
        let (c, q) = (c.clone(), q.clone());
        async move { newest_up(&c, &q).await.is_some_and(|t| t > first + 5.0) }
    })
    .await;
}

/// The absolute path of `program` (looked up on PATH when it has no slash).
fn which(program: &str) -> PathBuf {
    if program.contains('/') {
        return program.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} not found on PATH (the README test command installs it)")
        })
}
