//! Grafana's Prometheus data source as it really calls a Mimir URL
//! (`<host>/prometheus`): its requests replayed with their methods,
//! parameter names, order and encoding, over pushed series, an exemplar,
//! metadata and a recording rule. Taken from grafana/grafana (Grafana
//! 11/12) and the data source's current home,
//! grafana/grafana-prometheus-datasource:
//! - backend, pkg/promlib: `healthcheck.go` (instant `1+1` over 1s..4s),
//!   `heuristics.go` (buildinfo, `features` a map[string]string),
//!   `client/client.go` (query forms POSTed as Go's `url.Values.Encode`,
//!   times by `formatTime`, `step` in float seconds, `timeout`; resource
//!   calls forwarded with their body), `querydata/request.go` (POST by
//!   default), `models/query.go` (range aligned down to the step),
//!   `middleware/custom_query_params.go` (`stats=all`),
//!   `resource/resource.go` (`/suggestions`: labels, parameters in the URL);
//! - frontend, packages/grafana-prometheus/src: `datasource.ts` (`init`:
//!   rules, the exemplar probe with times in ms; `metadataRequest`: POST for
//!   `constants.ts`'s `GET_AND_POST_METADATA_ENDPOINTS`, else GET),
//!   `language_provider.ts` (`start`, metadata `limit`),
//!   `resource_clients.ts` (`limit` 40000, the range snapped to the minute
//!   by `language_utils.ts`, `match[]`; series of `{__name__!=""}`), the
//!   metrics browser (`useMetricsLabelsValues.ts`, `selectorBuilder.ts`),
//!   the query builder (`MetricCombobox.tsx`, `formatter.ts`,
//!   `MetricsLabelsSection.tsx`), code completion (`completions.ts`, limit
//!   1000) and template variables (`metric_find_query.ts`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use strata_proto::prometheus::{Exemplar, Label, MetricMetadata};

use crate::common::{Strata, encode_with_metadata, now_ms, series};

/// Editor lookups as `LabelsApiClient` sends them: a label's values (GET),
/// or label names for "" (POST), with `limit=40000`, the range, then
/// `match[]` unless empty. The answer must hold the listed names, or be
/// exactly them after `=`.
const LOOKUPS: &[(&str, &str, &str)] = &[
    // The language provider's `start` (label_names() asks the same).
    ("__name__", "", "grafana_replay"),
    ("", "", "instance,job"),
    // Metrics browser: the metric picked, then job a, then a and b.
    ("__name__", "grafana_replay{}", "grafana_replay"),
    ("", "grafana_replay{}", "instance,job"),
    ("job", "grafana_replay{}", "=a,b"),
    ("instance", r#"grafana_replay{job="a"}"#, "=i1,i2"),
    ("instance", r#"grafana_replay{job=~"(a|b)"}"#, "=i1,i2,i3"),
    // Query builder: "replay" typed with a job="a" filter; a value "i".
    (
        "__name__",
        r#"{__name__=~".*replay.*",job="a"}"#,
        "grafana_replay",
    ),
    (
        "instance",
        r#"{instance=~".*i.*", __name__="grafana_replay"}"#,
        "=i1,i2,i3",
    ),
    // Variables: label_names(replay), label_values(job),
    // label_values(grafana_replay{job="b"}, instance), metrics(grafana_.*).
    ("", r#"{__name__=~".*replay.*"}"#, "instance,job"),
    ("job", "", "=a,b"),
    ("instance", r#"grafana_replay{job="b"}"#, "=i3"),
    ("__name__", r#"{__name__=~"grafana_.*"}"#, "grafana_replay"),
];

/// Percent-encodes `s`, keeping ASCII letters, digits and `keep`; a space
/// is `+` when `plus`.
fn escape(s: &str, keep: &[u8], plus: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' if plus => out.push('+'),
            _ if b.is_ascii_alphanumeric() || keep.contains(&b) => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode` (keys sorted, `QueryEscape`) when `go`: the
/// backend's query forms and suggestion URLs. Else `encodeURIComponent` in
/// the parameters object's order: the frontend's resource calls (query
/// string or `serializeParams` form body), which the backend forwards as is.
fn form(pairs: &[(&str, &str)], go: bool) -> String {
    let mut pairs = pairs.to_vec();
    if go {
        pairs.sort_by_key(|p| p.0);
    }
    let keep: &[u8] = if go { b"-_.~" } else { b"-_.!~*'()" };
    let enc = |s: &str| escape(s, keep, go);
    let parts: Vec<String> = pairs.iter().map(|&(k, v)| enc(k) + "=" + &enc(v)).collect();
    parts.join("&")
}

/// Go's `formatTime`: float seconds without trailing zeros.
fn go_secs(ms: i64) -> String {
    let s = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Sends a request as the data source's backend does: GET, or POST of a
/// urlencoded `form`. The answer must be a 200 success.
async fn call(s: &Strata, path: &str, form: Option<String>) -> Json {
    let url = s.url(&format!("/prometheus{path}"));
    let req = match form {
        None => s.client.get(url),
        Some(body) => s
            .client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body),
    };
    let r = req.header("User-Agent", "Grafana/12.1.0").send().await;
    let r = r.expect("request");
    let (status, text) = (r.status(), r.text().await.unwrap_or_default());
    assert_eq!(status, 200, "{path}: {text}");
    let j: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    assert_eq!(j["status"], "success", "{path}: {j}");
    j
}

/// POSTs the backend's query form.
async fn query(s: &Strata, path: &str, p: &[(&str, &str)]) -> Json {
    call(s, path, Some(form(p, true))).await
}

/// POSTs a frontend resource call's form.
async fn resource(s: &Strata, path: &str, p: &[(&str, &str)]) -> Json {
    call(s, path, Some(form(p, false))).await
}

/// A list answer's strings.
fn strings(j: &Json) -> Vec<String> {
    let list = j["data"].as_array().unwrap_or_else(|| panic!("{j}"));
    list.iter()
        .map(|v| v.as_str().expect("str").into())
        .collect()
}

/// A query answer's series by their `label`, each with its (t, value) points.
fn points(j: &Json, label: &str) -> BTreeMap<String, Vec<(f64, String)>> {
    let mut out: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for r in j["data"]["result"].as_array().expect("result") {
        let pts = match r.get("values") {
            Some(v) => v.as_array().cloned().unwrap_or_default(),
            None => vec![r["value"].clone()],
        };
        let point = |p: &Json| {
            (
                p[0].as_f64().expect("t"),
                p[1].as_str().expect("v").to_string(),
            )
        };
        let key = r["metric"][label].as_str().unwrap_or_else(|| panic!("{r}"));
        let pts = pts.iter().map(point).collect();
        assert!(out.insert(key.to_string(), pts).is_none(), "{j}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_prometheus_data_source_requests_are_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A short poll so the recording rule saved below is listed in seconds.
    let s = Strata::start(dir.path(), &["-ruler.poll-interval=1s"]).await;
    let now = now_ms();
    // Counters scraped every 15 s up to 1 s ago, from 100 up by 1, 2 and 6
    // a scrape: `rate` sums to 0.2/s for job a and 0.4/s for job b.
    let mut pushed = Vec::new();
    for (job, instance, slope) in [("a", "i1", 1.0), ("a", "i2", 2.0), ("b", "i3", 6.0)] {
        let at = |k: i64| (now - 61_000 + k * 15_000, 100.0 + slope * k as f64);
        let samples: Vec<(i64, f64)> = (0..5).map(at).collect();
        let labels = [
            ("__name__", "grafana_replay"),
            ("instance", instance),
            ("job", job),
        ];
        pushed.push(series(&labels, &samples));
    }
    let trace_id = Label {
        name: "trace_id".into(),
        value: "replay-trace".into(),
    };
    pushed[0].exemplars.push(Exemplar {
        labels: vec![trace_id],
        value: 1.0,
        timestamp: now - 31_000,
    });
    let help = "Requests Grafana replays.";
    let meta = MetricMetadata {
        r#type: 1,
        metric_family_name: "grafana_replay".into(),
        help: help.into(),
        unit: String::new(),
    };
    let body = encode_with_metadata(pushed, vec![meta]);
    let (status, body) = s.push_raw(body, None).await;
    assert_eq!(status, 200, "{body}");
    // Every range below ends here, under 15 s after the last sample.
    let to = now_ms();
    let sum = "sum by (job) (grafana_replay)";
    let rule =
        format!("name: replay\nrules:\n  - record: job:grafana_replay:sum\n    expr: {sum}\n");
    let saved = s.client.post(s.url("/prometheus/config/v1/rules/grafana"));
    assert_eq!(
        saved.body(rule).send().await.expect("save rules").status(),
        202
    );

    // "Save & test": `1+1` at the end of 1s..4s, then the heuristics, which
    // decode every buildinfo field as a Go string and take a data source
    // with non-empty `features` for Mimir, ruler API enabled.
    let health = query(&s, "/api/v1/query", &[("query", "1+1"), ("time", "4")]).await;
    assert_eq!(health["data"]["resultType"], "scalar", "{health}");
    assert_eq!(health["data"]["result"][0].as_f64(), Some(4.0), "{health}");
    assert_eq!(health["data"]["result"][1], "2", "{health}");
    let info = call(&s, "/api/v1/status/buildinfo", None).await;
    for field in "version revision branch buildUser buildDate goVersion".split(' ') {
        let v = &info["data"][field];
        assert!(v.is_null() || v.is_string(), "{field}: {info}");
    }
    let features = info["data"]["features"].as_object().expect("features");
    assert!(!features.is_empty(), "{info}");
    assert!(features.values().all(Json::is_string), "{info}");
    assert_eq!(features.get("ruler_config_api"), Some(&Json::from("true")));

    // The editor's range, the last hour: `getRangeSnapInterval` (cache level
    // Low) floors its start and ceils its end to the minute; series and
    // query_result() take whole seconds, rounded up.
    let from = to - 3_600_000;
    let ceil_s = |ms: i64| (ms + 999).div_euclid(1000);
    let snap = (ceil_s(from) / 60 * 60).to_string();
    let snap_end = ((ceil_s(to) + 59) / 60 * 60).to_string();
    let (start_s, end_s) = (ceil_s(from).to_string(), ceil_s(to).to_string());

    // `init`'s exemplar probe: POST (its path contains `api/v1/query`),
    // `query=test` over the last 30 minutes in milliseconds.
    let (p0, p1) = ((to - 1_800_000).to_string(), to.to_string());
    let probe = [("query", "test"), ("start", &*p0), ("end", &*p1)];
    resource(&s, "/api/v1/query_exemplars", &probe).await;
    // The language provider's `start` also reads metadata (GET); then the
    // lookups of the editors and variables.
    let meta = call(&s, "/api/v1/metadata?limit=40000", None).await;
    assert_eq!(meta["data"]["grafana_replay"][0]["type"], "counter");
    assert_eq!(meta["data"]["grafana_replay"][0]["help"], help, "{meta}");
    for &(label, matcher, want) in LOOKUPS {
        let mut p = vec![("limit", "40000"), ("start", &*snap), ("end", &*snap_end)];
        p.extend(Some(("match[]", matcher)).filter(|_| !matcher.is_empty()));
        let path = format!("/api/v1/label/{label}/values?{}", form(&p, false));
        let got = strings(&match label {
            "" => resource(&s, "/api/v1/labels", &p).await,
            _ => call(&s, &path, None).await,
        });
        let ok = match want.strip_prefix('=') {
            Some(exact) => got.join(",") == exact,
            None => want.split(',').all(|w| got.iter().any(|g| g == w)),
        };
        assert!(ok, "{label:?} of {matcher:?}: {got:?}, want {want}");
    }
    // Code completion's label names of the metric: at most 1000.
    let p = [
        ("limit", "1000"),
        ("start", &*snap),
        ("end", &*snap_end),
        ("match[]", r#"{__name__="grafana_replay"}"#),
    ];
    let names = strings(&resource(&s, "/api/v1/labels", &p).await);
    assert!(names.iter().any(|n| n == "instance"), "{names:?}");
    // query_result(sum by (job) (grafana_replay)): POST at the range's end.
    let sums = resource(&s, "/api/v1/query", &[("query", sum), ("time", &*end_s)]).await;
    let sums = points(&sums, "job");
    assert_eq!((&*sums["a"][0].1, &*sums["b"][0].1), ("212", "124"));
    // A bare selector as a variable's query: its series, POST; then, with
    // "Use series endpoint" on, `SeriesApiClient.querySeries`' every series.
    let sel = r#"grafana_replay{job="a"}"#;
    let p = [("match[]", sel), ("start", &*start_s), ("end", &*end_s)];
    let found = resource(&s, "/api/v1/series", &p).await;
    let list = found["data"].as_array().expect("series").iter();
    let mut instances: Vec<&str> = list.filter_map(|m| m["instance"].as_str()).collect();
    instances.sort();
    assert_eq!(instances, ["i1", "i2"], "{found}");
    let p = [
        ("start", &*start_s),
        ("end", &*end_s),
        ("match[]", r#"{__name__!=""}"#),
        ("limit", "40000"),
    ];
    let all = resource(&s, "/api/v1/series", &p).await;
    let list = all["data"].as_array().expect("series").iter();
    assert_eq!(
        list.filter(|m| m["__name__"] == "grafana_replay").count(),
        3
    );
    // Ad hoc filter keys under a scope job="a": the backend's `/suggestions`
    // POSTs its parameters in the URL with an empty body.
    let url = form(
        &[("match[]", sel), ("start", &*snap), ("end", &*snap_end)],
        true,
    );
    let keys = call(&s, &format!("/api/v1/labels?{url}"), Some(String::new())).await;
    assert!(strings(&keys).iter().any(|k| k == "instance"), "{keys}");

    // A dashboard panel over the last hour: step 15 s (the scrape interval),
    // range aligned down to it, `$__rate_interval` as 1m, the data source's
    // query timeout; then its exemplars over the same range.
    let expr = "sum by(job) (rate(grafana_replay[1m]))";
    let end15 = to.div_euclid(15_000) * 15_000;
    let (start, end) = (go_secs(from.div_euclid(15_000) * 15_000), go_secs(end15));
    let p = [
        ("query", expr),
        ("start", &*start),
        ("end", &*end),
        ("step", "15"),
        ("timeout", "60s"),
    ];
    let panel = query(&s, "/api/v1/query_range", &p).await;
    assert_eq!(panel["data"]["resultType"], "matrix", "{panel}");
    let rates = points(&panel, "job");
    for (job, want) in [("a", 0.2), ("b", 0.4)] {
        let (t, v) = rates[job].last().unwrap_or_else(|| panic!("{panel}"));
        assert_eq!((t * 1000.0).round() as i64, end15, "{panel}");
        let v: f64 = v.parse().expect("float");
        assert!((v - want).abs() < 1e-9, "job {job}: {v}, not {want}");
    }
    let ex = query(&s, "/api/v1/query_exemplars", &p[..3]).await;
    assert_eq!(ex["data"].as_array().map(Vec::len), Some(1), "{ex}");
    assert_eq!(ex["data"][0]["seriesLabels"]["instance"], "i1", "{ex}");
    let exemplar = &ex["data"][0]["exemplars"][0];
    assert_eq!(exemplar["labels"]["trace_id"], "replay-trace", "{ex}");

    // Explore, "Both", min step 500ms over 5 minutes, query stats on
    // (`stats=all` in the URL): a half-second step with fractional times,
    // and the instant query at the range's unaligned end.
    let start = go_secs((to - 300_000).div_euclid(500) * 500);
    let end = go_secs(to.div_euclid(500) * 500);
    let p = [
        ("query", sel),
        ("start", &*start),
        ("end", &*end),
        ("step", "0.5"),
        ("timeout", "60s"),
    ];
    let explore = query(&s, "/api/v1/query_range?stats=all", &p).await;
    assert!(explore["data"]["stats"].is_object(), "stats=all: {explore}");
    let by_instance = points(&explore, "instance");
    assert_eq!(by_instance.len(), 2, "{explore}");
    for (instance, last) in [("i1", "104"), ("i2", "108")] {
        let pts = &by_instance[instance];
        assert!(pts.len() > 100, "{instance}: {pts:?}");
        assert_eq!(pts.last().map(|p| &*p.1), Some(last), "{instance}");
        let half = |p: &(f64, String)| (p.0 * 1000.0).round() as i64 % 1000 == 500;
        assert!(pts.iter().any(half), "{pts:?}");
    }
    let time = go_secs(to);
    let p = [("query", sel), ("time", &*time), ("timeout", "60s")];
    let instant = query(&s, "/api/v1/query?stats=all", &p).await;
    assert!(instant["data"]["stats"].is_object(), "stats=all: {instant}");
    let values = points(&instant, "instance");
    assert_eq!((&*values["i1"][0].1, &*values["i2"][0].1), ("104", "108"));

    // `init`'s recording rules (GET), mapped by name to their query as
    // `extractRuleMappingFromGroups` does, once the ruler has loaded them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = call(&s, "/api/v1/rules", None).await;
        let groups = rules["data"]["groups"].as_array().expect("groups");
        let mut all = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten());
        if let Some(r) = all.find(|r| r["type"] == "recording") {
            assert_eq!(r["name"], "job:grafana_replay:sum", "{rules}");
            assert_eq!(r["query"], sum, "{rules}");
            break;
        }
        assert!(Instant::now() < deadline, "no recording rule: {rules}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
