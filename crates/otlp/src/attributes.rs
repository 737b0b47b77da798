//! OpenTelemetry attribute keys and values as Prometheus and Loki see them:
//! a value's text (the OpenTelemetry Collector's `AsString`, which both
//! Prometheus's translator and Loki use) and a key's label name.

use std::fmt::Write as _;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};

/// How attribute keys become label names. Prometheus (3.8 and later, and
/// Mimir) keeps every replaced character as its own `_` and prefixes a
/// single leading underscore with `key`; Loki 3.7 collapses runs of
/// underscores and leaves a leading underscore alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelNaming {
    pub collapse_underscores: bool,
    pub prefix_leading_underscore: bool,
}

impl LabelNaming {
    /// The rules of Prometheus's OTLP receiver and Mimir.
    pub const PROMETHEUS: Self = Self {
        collapse_underscores: false,
        prefix_leading_underscore: true,
    };
    /// The rules of Loki's OTLP endpoint.
    pub const LOKI: Self = Self {
        collapse_underscores: true,
        prefix_leading_underscore: false,
    };

    /// The label name for an attribute key: every character outside
    /// `[A-Za-z0-9]` becomes `_`, a leading digit gets `key_` in front.
    /// `None` for keys that leave no name (empty, or only underscores).
    pub fn label_name(self, key: &str) -> Option<String> {
        let mut out = String::with_capacity(key.len() + 4);
        // Collapsing keeps a `__name__`-style wrapper intact.
        let (prefix, inner, suffix) = if self.collapse_underscores
            && key.len() >= 4
            && key.starts_with("__")
            && key.ends_with("__")
        {
            ("__", &key[2..key.len() - 2], "__")
        } else {
            ("", key, "")
        };
        out.push_str(prefix);
        for c in inner.chars() {
            let c = if c.is_ascii_alphanumeric() { c } else { '_' };
            if c == '_'
                && self.collapse_underscores
                && out.ends_with('_')
                && out.len() > prefix.len()
            {
                continue;
            }
            out.push(c);
        }
        out.push_str(suffix);
        if out.is_empty() || out.bytes().all(|b| b == b'_') {
            return None;
        }
        if out.as_bytes()[0].is_ascii_digit() {
            out.insert_str(0, "key_");
        } else if self.prefix_leading_underscore && out.starts_with('_') && !out.starts_with("__") {
            out.insert_str(0, "key");
        }
        Some(out)
    }
}

impl LabelNaming {
    /// [`Self::label_name`] of an owned key: a key that already is its own
    /// label name (the common case) is kept, not copied; a key that gives
    /// no name is handed back.
    pub fn into_label_name(self, key: String) -> Result<String, String> {
        let b = key.as_bytes();
        let changes = match b.first() {
            None => true,
            Some(first) => {
                first.is_ascii_digit()
                    || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    || b.iter().all(|c| *c == b'_')
                    || (self.prefix_leading_underscore && *first == b'_' && b.get(1) != Some(&b'_'))
                    || (self.collapse_underscores && key.contains("__"))
            }
        };
        if !changes {
            Ok(key)
        } else {
            self.label_name(&key).ok_or(key)
        }
    }
}

/// The text of an attribute value: strings as they are, numbers in their
/// shortest form, bytes in base64, arrays and maps as compact JSON with
/// sorted keys; no value is the empty string.
pub fn value_text(v: Option<&AnyValue>) -> String {
    inner_value_text(v.and_then(|v| v.value.as_ref()))
}

/// [`value_text`] of the value inside an `AnyValue`.
pub fn inner_value_text(v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(f)) => float_text(*f),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(Value::StringValueStrindex(i)) => i.to_string(),
        Some(other @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            let json = json_value(other).to_string();
            // Go's encoder escapes these for HTML; Loki and Prometheus
            // show its output, so the same text is stored.
            json.replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026")
        }
    }
}

/// [`value_text`] of an owned value, a string moved rather than copied.
pub fn into_value_text(v: Option<AnyValue>) -> String {
    match v {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => s,
        other => value_text(other.as_ref()),
    }
}

/// A float as JavaScript (and Go's JSON encoder) writes it: fixed
/// notation, exponent notation below 1e-6 and from 1e21.
pub(crate) fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "json: unsupported value: NaN".into();
    }
    if f.is_infinite() {
        let sign = if f > 0.0 { "+" } else { "-" };
        return format!("json: unsupported value: {sign}Inf");
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust writes `1e21` and `1e-7`; JavaScript writes `1e+21`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

fn json_value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(float_text(*f))),
        Value::BytesValue(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::StringValueStrindex(i) => J::from(*i),
        Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, json_value))
                .collect(),
        ),
        Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let value = kv
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(J::Null, json_value);
                    (kv.key.clone(), value)
                })
                .collect(),
        ),
    }
}

/// Lowercase hex of an id, or `None` when it is empty or all zero (unset).
pub fn id_hex(id: &[u8]) -> Option<String> {
    if id.iter().all(|b| *b == 0) {
        return None;
    }
    let mut s = String::with_capacity(id.len() * 2);
    for b in id {
        let _ = write!(s, "{b:02x}");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};

    fn any(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    #[test]
    fn prometheus_label_names() {
        let n = |k: &str| LabelNaming::PROMETHEUS.label_name(k);
        assert_eq!(n("service.name").as_deref(), Some("service_name"));
        assert_eq!(n("foo..bar").as_deref(), Some("foo__bar"));
        assert_eq!(n("héllo").as_deref(), Some("h_llo"));
        assert_eq!(n("1abc").as_deref(), Some("key_1abc"));
        assert_eq!(n("_foo").as_deref(), Some("key_foo"));
        assert_eq!(n("__foo").as_deref(), Some("__foo"));
        assert_eq!(n(""), None);
        assert_eq!(n("..."), None);
    }

    #[test]
    fn owned_keys_name_the_same_labels() {
        for naming in [LabelNaming::PROMETHEUS, LabelNaming::LOKI] {
            for key in [
                "plain",
                "service.name",
                "_foo",
                "__foo",
                "a__b",
                "__x__",
                "9x",
                "___",
                "",
                "héllo",
                "Upper_1",
            ] {
                assert_eq!(
                    naming.into_label_name(key.to_string()).ok(),
                    naming.label_name(key),
                    "{naming:?} {key:?}"
                );
            }
        }
    }

    #[test]
    fn loki_label_names() {
        let n = |k: &str| LabelNaming::LOKI.label_name(k);
        assert_eq!(n("k8s.pod.name").as_deref(), Some("k8s_pod_name"));
        assert_eq!(n("a..b").as_deref(), Some("a_b"));
        assert_eq!(n("_foo").as_deref(), Some("_foo"));
        assert_eq!(n("__x..y__").as_deref(), Some("__x_y__"));
        assert_eq!(n("9lives").as_deref(), Some("key_9lives"));
        assert_eq!(n("__"), None);
    }

    #[test]
    fn value_texts_as_the_collector_writes_them() {
        assert_eq!(value_text(None), "");
        assert_eq!(value_text(Some(&any(Value::IntValue(-3)))), "-3");
        assert_eq!(value_text(Some(&any(Value::DoubleValue(0.5)))), "0.5");
        assert_eq!(value_text(Some(&any(Value::DoubleValue(1e-7)))), "1e-7");
        assert_eq!(value_text(Some(&any(Value::DoubleValue(1e21)))), "1e+21");
        assert_eq!(value_text(Some(&any(Value::DoubleValue(3.0)))), "3");
        assert_eq!(value_text(Some(&any(Value::BoolValue(true)))), "true");
        assert_eq!(
            value_text(Some(&any(Value::BytesValue(vec![1, 2, 3])))),
            "AQID"
        );
        let map = any(Value::KvlistValue(KeyValueList {
            values: vec![
                KeyValue {
                    key: "z".into(),
                    value: Some(any(Value::StringValue("<a>".into()))),
                    ..Default::default()
                },
                KeyValue {
                    key: "a".into(),
                    value: Some(any(Value::ArrayValue(ArrayValue {
                        values: vec![any(Value::IntValue(1)), any(Value::BoolValue(false))],
                    }))),
                    ..Default::default()
                },
            ],
        }));
        assert_eq!(
            value_text(Some(&map)),
            r#"{"a":[1,false],"z":"\u003ca\u003e"}"#
        );
    }

    #[test]
    fn ids_in_hex_unless_unset() {
        assert_eq!(id_hex(&[0; 8]), None);
        assert_eq!(id_hex(&[]), None);
        assert_eq!(id_hex(&[0, 0xab, 1]).as_deref(), Some("00ab01"));
    }
}
