//! Opt-in authentication against real processes: HTTP tokens scoped to
//! tenants and actions (tenant A's token can neither read, write nor change
//! tenant B's data or rules; reloads without a restart), and mutual TLS
//! between roles (a cluster works with it; a client or a process without a
//! certificate signed by the cluster's CA cannot push, read, vote or join
//! the ring). Certificates are made with the `openssl` command.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value as Json;

use crate::common::{Strata, encode, now_ms, secs, series};

fn sha256(token: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn token_entry(name: &str, token: &str, tenants: &str, scopes: &str) -> String {
    format!(
        "  - name: {name}\n    sha256: {}\n    tenants: {tenants}\n    scopes: {scopes}\n",
        sha256(token)
    )
}

/// A request with optional bearer token and tenant; returns status and body.
async fn send(
    s: &Strata,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    tenant: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, String) {
    let mut req = s.client.request(method, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    if let Some((ct, b)) = body {
        req = req.header("Content-Type", ct).body(b);
        if ct == "application/x-protobuf" {
            req = req.header("Content-Encoding", "snappy");
        }
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn push_body(name: &str, t: i64, v: f64) -> Option<(&'static str, Vec<u8>)> {
    Some((
        "application/x-protobuf",
        encode(vec![series(&[("__name__", name)], &[(t, v)])]),
    ))
}

fn query_path(q: &str, t: i64) -> String {
    format!("/api/v1/query?query={q}&time={}", secs(t))
}

/// One request of the token test: what, method, path, token, tenant
/// header, body, and the status it must get.
type Case<'a> = (
    &'a str,
    reqwest::Method,
    String,
    Option<&'a str>,
    Option<&'a str>,
    Option<(&'a str, Vec<u8>)>,
    u16,
);

async fn check_cases(s: &Strata, cases: Vec<Case<'_>>) {
    for (what, method, path, token, tenant, body, want) in cases {
        let (got, text) = send(s, method, &path, token, tenant, body).await;
        assert_eq!(got, want, "{what}: {}", &text[..text.len().min(300)]);
    }
}

#[tokio::test]
async fn tokens_confine_each_tenant_to_its_own_data_and_rules() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    let a_reader = token_entry("a-reader", "tok-a-read", "[team-a]", "[read]");
    let others = [
        token_entry("a-writer", "tok-a-write", "[team-a]", "[write]"),
        token_entry("a-rules", "tok-a-rules", "[team-a]", "[rules, read]"),
        token_entry("b-all", "tok-b", "[team-b]", "[read, write, rules]"),
        token_entry("both", "tok-both", "[team-a, team-b]", "[read]"),
        token_entry("ops", "tok-ops", "['*']", "[admin]"),
    ]
    .concat();
    std::fs::write(&tokens, format!("tokens:\n{a_reader}{others}")).unwrap();
    let flag = format!("-auth.tokens-file={}", tokens.display());
    let s = Strata::start(
        dir.path(),
        &[
            "-auth.multitenancy-enabled=true",
            &flag,
            "-auth.tokens-reload-period=200ms",
        ],
    )
    .await;
    let now = now_ms();
    let q = || query_path("m", now);
    let push = |v: f64| push_body("m", now, v);
    let group = || {
        Some((
            "application/yaml",
            b"name: g\nrules:\n  - record: r\n    expr: vector(1)\n".to_vec(),
        ))
    };
    let rules = "/prometheus/config/v1/rules/ns".to_string();
    let listing = "/prometheus/config/v1/rules".to_string();
    let forget = || {
        Some((
            "application/x-www-form-urlencoded",
            b"forget=nobody".to_vec(),
        ))
    };
    check_cases(
        &s,
        vec![
            (
                "probes are open",
                Method::GET,
                "/ready".into(),
                None,
                None,
                None,
                200,
            ),
            (
                "no token",
                Method::POST,
                "/api/v1/push".into(),
                None,
                Some("team-a"),
                push(1.0),
                401,
            ),
            (
                "unknown token",
                Method::POST,
                "/api/v1/push".into(),
                Some("nope"),
                Some("team-a"),
                push(1.0),
                401,
            ),
            (
                "write own tenant",
                Method::POST,
                "/api/v1/push".into(),
                Some("tok-a-write"),
                Some("team-a"),
                push(1.0),
                200,
            ),
            (
                "write, tenant implied",
                Method::POST,
                "/api/v1/push".into(),
                Some("tok-a-write"),
                None,
                push_body("m2", now, 2.0),
                200,
            ),
            (
                "write another tenant",
                Method::POST,
                "/api/v1/push".into(),
                Some("tok-a-write"),
                Some("team-b"),
                push(9.0),
                403,
            ),
            (
                "tenant b writes",
                Method::POST,
                "/api/v1/push".into(),
                Some("tok-b"),
                Some("team-b"),
                push(5.0),
                200,
            ),
            (
                "write token reads",
                Method::GET,
                q(),
                Some("tok-a-write"),
                None,
                None,
                403,
            ),
            (
                "read another tenant",
                Method::GET,
                q(),
                Some("tok-a-read"),
                Some("team-b"),
                None,
                403,
            ),
            (
                "several tenants, none named",
                Method::GET,
                q(),
                Some("tok-both"),
                None,
                None,
                401,
            ),
            (
                "rules without the rules scope",
                Method::POST,
                rules.clone(),
                Some("tok-a-read"),
                None,
                group(),
                403,
            ),
            (
                "LogQL rules on Loki's legacy path without the rules scope",
                Method::POST,
                "/api/prom/rules/ns".into(),
                Some("tok-a-read"),
                None,
                Some((
                    "application/yaml",
                    b"name: g\nrules:\n  - record: r\n    expr: sum(count_over_time({a=\"b\"}[1m]))\n".to_vec(),
                )),
                403,
            ),
            (
                "rules with it",
                Method::POST,
                rules.clone(),
                Some("tok-a-rules"),
                None,
                group(),
                202,
            ),
            (
                "rules of another tenant",
                Method::POST,
                rules.clone(),
                Some("tok-b"),
                Some("team-a"),
                group(),
                403,
            ),
            (
                "list another tenant's rules",
                Method::GET,
                listing.clone(),
                Some("tok-b"),
                Some("team-a"),
                None,
                403,
            ),
            (
                "delete another tenant's rules",
                Method::DELETE,
                rules.clone(),
                Some("tok-b"),
                Some("team-a"),
                None,
                403,
            ),
            (
                "ring without admin",
                Method::GET,
                "/ring".into(),
                Some("tok-a-read"),
                None,
                None,
                403,
            ),
            (
                "ring with admin",
                Method::GET,
                "/ring".into(),
                Some("tok-ops"),
                Some("team-a"),
                None,
                200,
            ),
            (
                "forget without admin",
                Method::POST,
                "/ring".into(),
                Some("tok-b"),
                None,
                forget(),
                403,
            ),
        ],
    )
    .await;
    // Each tenant reads its own data only.
    let (_, body) = send(&s, Method::GET, &q(), Some("tok-a-read"), None, None).await;
    let j: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(j["data"]["result"][0]["value"][1], "1", "{body}");
    let (_, body) = send(&s, Method::GET, &q(), Some("tok-b"), None, None).await;
    assert!(body.contains("\"5\"") && !body.contains("\"1\""), "{body}");
    let (_, body) = send(
        &s,
        Method::GET,
        &q(),
        Some("tok-both"),
        Some("team-b"),
        None,
    )
    .await;
    assert!(body.contains("\"5\""), "{body}");
    // Basic auth: the user name names the tenant.
    let basic = base64::engine::general_purpose::STANDARD.encode("team-a:tok-both");
    let r = s
        .client
        .get(s.url(&q()))
        .header("Authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"1\""));
    // Tenant b never sees tenant a's rule group; tenant a does.
    let (_, listed) = send(&s, Method::GET, &listing, Some("tok-b"), None, None).await;
    assert!(
        !listed.contains("name: g"),
        "team-b sees team-a's group: {listed}"
    );
    let (st, listed) = send(&s, Method::GET, &listing, Some("tok-a-rules"), None, None).await;
    assert!(st == 200 && listed.contains("name: g"), "{st} {listed}");

    // Reloaded without a restart: a-reader revoked, a new token accepted.
    let c = token_entry("c", "tok-c", "[team-c]", "[read]");
    std::fs::write(&tokens, format!("tokens:\n{others}{c}")).unwrap();
    let status = |token: &'static str| {
        let (s, q) = (&s, q());
        async move { send(s, Method::GET, &q, Some(token), None, None).await.0 }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("tok-a-read").await != 401 {
        assert!(Instant::now() < deadline, "revoked token still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status("tok-c").await, 200);
    // A file that does not parse keeps the tokens in force.
    std::fs::write(&tokens, "tokens: [oops").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s
        .self_metric("strata_auth_tokens_last_reload_successful")
        .await
        != 0.0
    {
        assert!(Instant::now() < deadline, "bad tokens file not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status("tok-c").await, 200);
    assert!(s.self_metric("strata_auth_failures_total").await >= 12.0);
}

/// A CA, and a certificate it signs for 127.0.0.1 usable as server and client.
fn make_certs(dir: &Path, name: &str) {
    let sh = |args: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!(
        "openssl req -x509 {ec} -keyout {name}-ca.key -out {name}-ca.crt -days 2 -subj /CN={name}-ca 2>/dev/null"
    ));
    sh(&format!(
        "openssl req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}-node 2>/dev/null"
    ));
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    sh(&format!(
        "openssl x509 -req -in {name}.csr -CA {name}-ca.crt -CAkey {name}-ca.key -CAcreateserial -out {name}.crt -days 2 -extfile {name}.ext 2>/dev/null"
    ));
}

fn tls_args(dir: &Path, name: &str) -> Vec<String> {
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        format!("-server.grpc-tls-cert-path={}", p(&format!("{name}.crt"))),
        format!("-server.grpc-tls-key-path={}", p(&format!("{name}.key"))),
        format!("-server.grpc-tls-ca-path={}", p(&format!("{name}-ca.crt"))),
        "-ingester.client.tls-enabled=true".into(),
        format!(
            "-ingester.client.tls-cert-path={}",
            p(&format!("{name}.crt"))
        ),
        format!(
            "-ingester.client.tls-key-path={}",
            p(&format!("{name}.key"))
        ),
        format!(
            "-ingester.client.tls-ca-path={}",
            p(&format!("{name}-ca.crt"))
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_roles_refuses_processes_without_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs, "cluster");
    make_certs(&certs, "rogue");
    let args = tls_args(&certs, "cluster");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let procs = crate::cluster::start_voters(
        &tmp.path().join("nodes"),
        &["distributor,ingester", "ingester", "ingester,querier"],
        &args,
    )
    .await;
    // Writes replicate and reads fan out over mutual TLS.
    let now = now_ms();
    let (st, body) = procs[0]
        .push(
            vec![series(&[("__name__", "over_tls")], &[(now, 42.0)])],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let got = procs[2].query("over_tls", now).await;
    assert_eq!(got["result"][0]["value"][1], "42", "{got}");

    // A client without a certificate, or with one from another CA, or in
    // plaintext, cannot call an ingester or the ring.
    let grpc_addr = |p: &Strata| {
        p.extra_args
            .iter()
            .find_map(|a| a.strip_prefix("-server.grpc-listen-port="))
            .map(|port| format!("127.0.0.1:{port}"))
            .expect("grpc port")
    };
    let target = grpc_addr(&procs[1]);
    let ca = tonic::transport::Certificate::from_pem(
        std::fs::read(certs.join("cluster-ca.crt")).unwrap(),
    );
    let rogue = tonic::transport::Identity::from_pem(
        std::fs::read(certs.join("rogue.crt")).unwrap(),
        std::fs::read(certs.join("rogue.key")).unwrap(),
    );
    let good = tonic::transport::Identity::from_pem(
        std::fs::read(certs.join("cluster.crt")).unwrap(),
        std::fs::read(certs.join("cluster.key")).unwrap(),
    );
    let attempt = |tls: Option<tonic::transport::ClientTlsConfig>| {
        let target = target.clone();
        async move {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut e = tonic::transport::Endpoint::from_shared(format!("{scheme}://{target}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5));
            if let Some(t) = tls {
                e = e.tls_config(t).unwrap();
            }
            let channel = match e.connect().await {
                Ok(c) => c,
                Err(_) => return false,
            };
            let mut ring = strata_proto::ring::ring_client::RingClient::new(channel);
            // An empty command reaches the ring service only through an
            // accepted connection, which refuses it as InvalidArgument
            // ("bad ring message"); a refused connection fails otherwise.
            match ring
                .update(strata_proto::ring::UpdateRequest::default())
                .await
            {
                Ok(_) => true,
                Err(s) => {
                    s.code() == tonic::Code::InvalidArgument
                        && s.message().contains("bad ring message")
                }
            }
        }
    };
    let base = || {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .domain_name("localhost")
    };
    assert!(!attempt(None).await, "plaintext call accepted");
    assert!(
        !attempt(Some(base())).await,
        "call without a client certificate accepted"
    );
    assert!(
        !attempt(Some(base().identity(rogue))).await,
        "certificate of another CA accepted"
    );
    assert!(
        attempt(Some(base().identity(good))).await,
        "the cluster's own certificate refused"
    );

    // A process without a certificate cannot join: it never gets ready and
    // never appears in the ring.
    let peers = procs[0]
        .extra_args
        .iter()
        .find(|a| a.starts_with("-ring.raft.peers="))
        .cloned()
        .unwrap();
    let outsider_dir = tmp.path().join("outsider");
    std::fs::create_dir_all(&outsider_dir).unwrap();
    let grpc_port = format!("-server.grpc-listen-port={}", crate::common::free_port());
    let mut outsider = Strata::prepare(
        &outsider_dir,
        &[
            "-target=querier",
            &grpc_port,
            &peers,
            "-ring.instance-id=outsider",
        ],
    );
    outsider.launch();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ready = outsider
        .client
        .get(outsider.url("/ready"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_ne!(ready, 200, "a process without a certificate became ready");
    let ring: Json = procs[0]
        .client
        .get(procs[0].url("/ring?format=json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!ring.to_string().contains("outsider"), "{ring}");
    outsider.kill9();
}
