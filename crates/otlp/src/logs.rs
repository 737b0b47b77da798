//! OTLP logs as Loki 3 stores them: a resource's attributes named in the
//! tenant's `otlp_config` (by default `service.name`, `k8s.pod.name` and
//! the other well-known identifying attributes) become stream labels, the
//! rest structured metadata on each entry, as do log record and scope
//! attributes and the record's severity, trace and span ids and flags; the
//! body is the line (maps and arrays as JSON). A resource without
//! `service.name` gets `service_name` from its other labels, or
//! `unknown_service`, as Loki discovers it.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use strata_limits::{OtlpAction, OtlpAttributeRule, OtlpConfig};
use strata_model::logs::LogEntry;
use strata_model::{Label, Labels};

use crate::attributes::{LabelNaming, id_hex, inner_value_text, value_text};

/// Resource attributes that are stream labels unless the tenant's
/// `otlp_config` says `ignore_defaults` (Loki 3's list).
pub const DEFAULT_INDEX_LABELS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Stream labels a resource without `service.name` takes its
/// `service_name` from, the first one set (Loki's `discover_service_name`).
const SERVICE_NAME_SOURCES: &[&str] = &[
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// One stream's labels (sorted) and entries.
#[derive(Debug, Clone, PartialEq)]
pub struct LogStream {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// A request Loki would refuse as a whole (400).
#[derive(Debug, thiserror::Error)]
#[error("OTLP logs: attribute key {0:?} gives no label name")]
pub struct InvalidAttribute(String);

/// The streams of a request; entries without a timestamp take `now_ns`.
pub fn translate_logs(
    req: ExportLogsServiceRequest,
    config: &OtlpConfig,
    now_ns: i64,
) -> Result<Vec<LogStream>, InvalidAttribute> {
    let default_rule = OtlpAttributeRule {
        action: OtlpAction::IndexLabel,
        attributes: DEFAULT_INDEX_LABELS.iter().map(|s| s.to_string()).collect(),
        regex: None,
    };
    let resource_rules = || {
        (!config.resource_attributes.ignore_defaults)
            .then_some(&default_rule)
            .into_iter()
            .chain(&config.resource_attributes.attributes_config)
    };
    let mut streams: Vec<LogStream> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for rl in req.resource_logs {
        let attrs = rl.resource.map(|r| r.attributes).unwrap_or_default();
        let mut stream_labels: Vec<Label> = Vec::new();
        let mut resource_metadata: Vec<Label> = Vec::new();
        for kv in &attrs {
            match action(resource_rules(), &kv.key) {
                OtlpAction::IndexLabel => flatten(kv, &mut stream_labels)?,
                OtlpAction::StructuredMetadata => flatten(kv, &mut resource_metadata)?,
                OtlpAction::Drop => {}
            }
        }
        if !attrs
            .iter()
            .any(|kv| kv.key == "service.name" && !value_is_empty(kv))
        {
            let discovered = SERVICE_NAME_SOURCES.iter().find_map(|source| {
                stream_labels
                    .iter()
                    .find(|l| l.name == *source && !l.value.is_empty())
            });
            let value = discovered.map_or("unknown_service".to_string(), |l| l.value.clone());
            stream_labels.push(Label::new("service_name".to_string(), value));
        }
        for sl in rl.scope_logs {
            let mut scope_metadata: Vec<Label> = Vec::new();
            if let Some(scope) = &sl.scope {
                for kv in &scope.attributes {
                    if action(&config.scope_attributes, &kv.key) != OtlpAction::Drop {
                        flatten(kv, &mut scope_metadata)?;
                    }
                }
                push_if(&mut scope_metadata, "scope_name", &scope.name);
                push_if(&mut scope_metadata, "scope_version", &scope.version);
                if scope.dropped_attributes_count != 0 {
                    scope_metadata.push(Label::new(
                        "scope_dropped_attributes_count".to_string(),
                        scope.dropped_attributes_count.to_string(),
                    ));
                }
            }
            for record in sl.log_records {
                let (labels, entry) = translate_record(
                    record,
                    config,
                    &stream_labels,
                    &resource_metadata,
                    &scope_metadata,
                    now_ns,
                )?;
                let i = *index.entry(labels.clone()).or_insert_with(|| {
                    streams.push(LogStream {
                        labels,
                        entries: Vec::new(),
                    });
                    streams.len() - 1
                });
                streams[i].entries.push(entry);
            }
        }
    }
    Ok(streams)
}

fn value_is_empty(kv: &KeyValue) -> bool {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        None => true,
        Some(Value::StringValue(s)) => s.is_empty(),
        Some(other) => inner_value_text(Some(other)).is_empty(),
    }
}

/// The action of the first rule covering `key`; structured metadata when none does.
fn action<'a>(rules: impl IntoIterator<Item = &'a OtlpAttributeRule>, key: &str) -> OtlpAction {
    rules
        .into_iter()
        .find(|r| r.matches(key))
        .map_or(OtlpAction::StructuredMetadata, |r| r.action)
}

/// An attribute as labels: maps flattened into `parent_child` names.
fn flatten(kv: &KeyValue, out: &mut Vec<Label>) -> Result<(), InvalidAttribute> {
    let name = LabelNaming::LOKI
        .label_name(&kv.key)
        .ok_or_else(|| InvalidAttribute(kv.key.clone()))?;
    flatten_named(name, kv.value.as_ref().and_then(|v| v.value.as_ref()), out)
}

fn flatten_named(
    name: String,
    value: Option<&Value>,
    out: &mut Vec<Label>,
) -> Result<(), InvalidAttribute> {
    match value {
        Some(Value::KvlistValue(map)) => {
            for child in &map.values {
                let child_name = LabelNaming::LOKI
                    .label_name(&format!("{name}_{}", child.key))
                    .ok_or_else(|| InvalidAttribute(child.key.clone()))?;
                flatten_named(
                    child_name,
                    child.value.as_ref().and_then(|v| v.value.as_ref()),
                    out,
                )?;
            }
            Ok(())
        }
        other => {
            let text = inner_value_text(other);
            if !text.is_empty() {
                out.push(Label::new(name, text));
            }
            Ok(())
        }
    }
}

fn push_if(out: &mut Vec<Label>, name: &str, value: &str) {
    if !value.is_empty() {
        out.push(Label::new(name.to_string(), value.to_string()));
    }
}

fn translate_record(
    record: LogRecord,
    config: &OtlpConfig,
    resource_labels: &[Label],
    resource_metadata: &[Label],
    scope_metadata: &[Label],
    now_ns: i64,
) -> Result<(Labels, LogEntry), InvalidAttribute> {
    let mut labels: Vec<Label> = resource_labels.to_vec();
    let mut metadata: Vec<Label> = Vec::new();
    for kv in &record.attributes {
        if !record.event_name.is_empty() && kv.key == "event_name" {
            continue;
        }
        match action(&config.log_attributes, &kv.key) {
            OtlpAction::IndexLabel => flatten(kv, &mut labels)?,
            OtlpAction::StructuredMetadata => flatten(kv, &mut metadata)?,
            OtlpAction::Drop => {}
        }
    }
    let as_i64 = |ns: u64| i64::try_from(ns).unwrap_or(i64::MAX);
    if record.time_unix_nano != 0 && record.observed_time_unix_nano != 0 {
        metadata.push(Label::new(
            "observed_timestamp".to_string(),
            record.observed_time_unix_nano.to_string(),
        ));
    }
    if record.severity_number != 0 {
        metadata.push(Label::new(
            "severity_number".to_string(),
            record.severity_number.to_string(),
        ));
    }
    if config.severity_text_as_label {
        push_if(&mut labels, "severity_text", &record.severity_text);
    } else {
        push_if(&mut metadata, "severity_text", &record.severity_text);
    }
    if record.dropped_attributes_count != 0 {
        metadata.push(Label::new(
            "dropped_attributes_count".to_string(),
            record.dropped_attributes_count.to_string(),
        ));
    }
    if record.flags != 0 {
        metadata.push(Label::new("flags".to_string(), record.flags.to_string()));
    }
    if let Some(id) = id_hex(&record.trace_id) {
        metadata.push(Label::new("trace_id".to_string(), id));
    }
    if let Some(id) = id_hex(&record.span_id) {
        metadata.push(Label::new("span_id".to_string(), id));
    }
    push_if(&mut metadata, "event_name", &record.event_name);
    metadata.extend_from_slice(resource_metadata);
    metadata.extend_from_slice(scope_metadata);
    let ts = if record.time_unix_nano != 0 {
        as_i64(record.time_unix_nano)
    } else if record.observed_time_unix_nano != 0 {
        as_i64(record.observed_time_unix_nano)
    } else {
        now_ns
    };
    Ok((
        unique(labels),
        LogEntry {
            ts,
            line: value_text(record.body.as_ref()),
            metadata: unique(metadata),
        },
    ))
}

/// A label set with each name once, the first occurrence kept (the sort
/// is stable, so equal names stay in the order they were added).
fn unique(mut labels: Vec<Label>) -> Labels {
    labels.retain(|l| !l.value.is_empty());
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels.dedup_by(|later, first| later.name == first.name);
    Labels::from_sorted(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use strata_limits::{AnchoredRegex, OtlpResourceAttributes};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }
    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.logger".into(),
                        version: "2.0".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn record(body: Value) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_000_000_000_002,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(body) }),
            attributes: vec![
                kv("user.id", Value::IntValue(7)),
                kv(
                    "http",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("method", s("GET"))],
                    }),
                ),
            ],
            trace_id: vec![0x11; 16],
            span_id: vec![0x22; 8],
            ..Default::default()
        }
    }

    fn pairs(l: &Labels) -> Vec<(String, String)> {
        l.iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn loki_default_mapping() {
        let req = request(
            vec![
                kv("service.name", s("api")),
                kv("k8s.pod.name", s("api-7")),
                kv("host.name", s("node-a")),
            ],
            vec![record(s("hello"))],
        );
        let streams = translate_logs(req, &OtlpConfig::default(), 5).unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(
            pairs(&streams[0].labels),
            owned(&[("k8s_pod_name", "api-7"), ("service_name", "api")])
        );
        let e = &streams[0].entries[0];
        assert_eq!(e.ts, 1_700_000_000_000_000_001);
        assert_eq!(e.line, "hello");
        let mut got = pairs(&e.metadata);
        got.sort();
        assert_eq!(
            got,
            owned(&[
                ("user_id", "7"),
                ("http_method", "GET"),
                ("observed_timestamp", "1700000000000000002"),
                ("severity_number", "9"),
                ("severity_text", "INFO"),
                ("trace_id", "11111111111111111111111111111111"),
                ("span_id", "2222222222222222"),
                ("host_name", "node-a"),
                ("scope_name", "app.logger"),
                ("scope_version", "2.0"),
            ])
        );
    }

    #[test]
    fn service_name_is_discovered_or_unknown() {
        let req = request(
            vec![kv("k8s.container.name", s("web"))],
            vec![record(s("x"))],
        );
        let streams = translate_logs(req, &OtlpConfig::default(), 0).unwrap();
        assert_eq!(
            pairs(&streams[0].labels),
            owned(&[("k8s_container_name", "web"), ("service_name", "web")])
        );
        let req = request(vec![kv("host.name", s("h"))], vec![record(s("x"))]);
        let streams = translate_logs(req, &OtlpConfig::default(), 0).unwrap();
        assert_eq!(
            pairs(&streams[0].labels),
            owned(&[("service_name", "unknown_service")])
        );
    }

    #[test]
    fn bodies_and_timestamps() {
        let mut r = record(Value::KvlistValue(KeyValueList {
            values: vec![kv("msg", s("hi")), kv("code", Value::IntValue(3))],
        }));
        r.time_unix_nano = 0;
        let mut late = record(s("late"));
        late.time_unix_nano = 0;
        late.observed_time_unix_nano = 0;
        let req = request(vec![kv("service.name", s("a"))], vec![r, late]);
        let streams = translate_logs(req, &OtlpConfig::default(), 99).unwrap();
        let entries = &streams[0].entries;
        assert_eq!(entries[0].line, r#"{"code":3,"msg":"hi"}"#);
        assert_eq!(entries[0].ts, 1_700_000_000_000_000_002, "observed time");
        assert!(entries[0].metadata.get("observed_timestamp").is_none());
        assert_eq!(entries[1].ts, 99, "the time of arrival");
    }

    #[test]
    fn tenant_rules() {
        let rule = |action, attributes: &[&str], regex: Option<&str>| OtlpAttributeRule {
            action,
            attributes: attributes.iter().map(|s| s.to_string()).collect(),
            regex: regex.map(|r| AnchoredRegex::new(r.to_string()).unwrap()),
        };
        let config = OtlpConfig {
            resource_attributes: OtlpResourceAttributes {
                ignore_defaults: true,
                attributes_config: vec![
                    rule(OtlpAction::IndexLabel, &[], Some("k8s\\..*")),
                    rule(OtlpAction::Drop, &["host.name"], None),
                ],
            },
            log_attributes: vec![
                rule(OtlpAction::IndexLabel, &["user.id"], None),
                rule(OtlpAction::Drop, &["http"], None),
            ],
            severity_text_as_label: true,
            ..Default::default()
        };
        let req = request(
            vec![
                kv("service.name", s("api")),
                kv("k8s.namespace.name", s("prod")),
                kv("host.name", s("h")),
            ],
            vec![record(s("x"))],
        );
        let streams = translate_logs(req, &config, 0).unwrap();
        assert_eq!(
            pairs(&streams[0].labels),
            owned(&[
                ("k8s_namespace_name", "prod"),
                ("severity_text", "INFO"),
                ("user_id", "7")
            ]),
            "service.name is structured metadata once the defaults are ignored"
        );
        let md = &streams[0].entries[0].metadata;
        assert_eq!(md.get("service_name"), Some("api"));
        assert!(md.get("host_name").is_none() && md.get("http_method").is_none());
    }

    #[test]
    fn keys_without_a_label_name_refuse_the_request() {
        let req = request(vec![kv("...", s("x"))], vec![record(s("x"))]);
        let err = translate_logs(req, &OtlpConfig::default(), 0).unwrap_err();
        assert!(err.to_string().contains("\"...\""), "{err}");
    }
}
