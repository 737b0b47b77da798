//! Log level discovery at ingestion, as Loki 3.6's distributor does it
//! (`discover_log_levels`): every entry gets a `detected_level` structured
//! metadata field (`trace`, `debug`, `info`, `warn`, `error`, `critical`,
//! `fatal` or `unknown`), which Grafana's Logs Drilldown colours and filters
//! by. Taken, first match wins, from an existing `detected_level`, a stream
//! label or structured metadata field named in `log_level_fields` (verbatim),
//! the OTLP `severity_number`, a JSON or logfmt field of the line
//! (normalised), and last from keywords in the line.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use strata_model::Labels;

/// The structured-metadata field the level is written to.
pub const LEVEL_FIELD: &str = "detected_level";

/// A level for an entry, or `None` when nothing is to be added (it has
/// one already, or a level field exists with an empty value).
pub(crate) fn detect(
    stream: &Labels,
    metadata: &Labels,
    line: &str,
    fields: &[String],
    json_max_depth: usize,
) -> Option<String> {
    if metadata.get(LEVEL_FIELD).is_some() {
        return None;
    }
    for labels in [stream, metadata] {
        if let Some(value) = fields.iter().find_map(|f| labels.get(f)) {
            return (!value.is_empty()).then(|| value.to_string());
        }
    }
    if let Some(n) = metadata.get("severity_number").filter(|n| !n.is_empty()) {
        return Some(from_severity_number(n).to_string());
    }
    Some(from_line(line, fields, json_max_depth).to_string())
}

/// OTLP severity numbers (1-4 trace, 5-8 debug, ...), as Loki maps them.
fn from_severity_number(n: &str) -> &'static str {
    match n.trim().parse::<i64>() {
        Err(_) => "info",
        Ok(0) => "unknown",
        Ok(n) if n <= 4 => "trace",
        Ok(5..=8) => "debug",
        Ok(9..=12) => "info",
        Ok(13..=16) => "warn",
        Ok(17..=20) => "error",
        Ok(21..=24) => "fatal",
        Ok(_) => "unknown",
    }
}

fn from_line(line: &str, fields: &[String], json_max_depth: usize) -> &'static str {
    let trimmed = line.trim();
    let value = if trimmed.starts_with('{') && trimmed.ends_with('}') {
        json_level(trimmed, fields, json_max_depth)
    } else if line.contains('=') {
        logfmt_level(line, fields)
    } else {
        None
    };
    value
        .as_deref()
        .and_then(normalise)
        .unwrap_or_else(|| from_keywords(line))
}

fn normalise(v: &str) -> Option<&'static str> {
    let is = |names: &[&str]| names.iter().any(|n| v.eq_ignore_ascii_case(n));
    Some(if is(&["trace", "trc"]) {
        "trace"
    } else if is(&["debug", "dbg"]) {
        "debug"
    } else if is(&["info", "inf", "information"]) {
        "info"
    } else if is(&["warn", "wrn", "warning"]) {
        "warn"
    } else if is(&["error", "err"]) {
        "error"
    } else if is(&["critical"]) {
        "critical"
    } else if is(&["fatal"]) {
        "fatal"
    } else {
        return None;
    })
}

/// Loki 3.6's keyword groups, tried in this order; plain substrings.
fn from_keywords(line: &str) -> &'static str {
    let any = |words: &[&str]| words.iter().any(|w| line.contains(w));
    if any(&["info", "INFO"]) {
        "info"
    } else if any(&["err:", "ERR:", "[err]", "[ERR]", "[error]", "[ERROR]"]) {
        "error"
    } else if any(&["warn:", "WARN:", "[warn]", "[WARN]", "warning", "WARNING"]) {
        "warn"
    } else if any(&["critical:", "CRITICAL:", "[critical]", "[CRITICAL]"]) {
        "critical"
    } else if any(&["debug", "DEBUG"]) {
        "debug"
    } else {
        "unknown"
    }
}

/// The value of the best-ranked field (earliest in `fields`), keys
/// compared without case.
fn logfmt_level(line: &str, fields: &[String]) -> Option<String> {
    let (pairs, _) = strata_logql::logfmt_pairs(line);
    let mut best: Option<(usize, String)> = None;
    for (k, v) in pairs {
        if let Some(rank) = fields.iter().position(|f| f.eq_ignore_ascii_case(&k))
            && best.as_ref().is_none_or(|(r, _)| rank < *r)
        {
            best = Some((rank, v));
            if rank == 0 {
                break;
            }
        }
    }
    best.map(|(_, v)| v)
}

/// The first string value, in document order, of a key named exactly as
/// one of `fields`, looking `max_depth` objects deep (0: any depth).
fn json_level(line: &str, fields: &[String], max_depth: usize) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(line);
    FindLevel {
        fields,
        depth: 0,
        max_depth,
    }
    .deserialize(&mut de)
    .ok()
    .flatten()
}

struct FindLevel<'a> {
    fields: &'a [String],
    depth: usize,
    max_depth: usize,
}

/// A JSON value that is either a string (its text) or anything else.
enum Item {
    Text(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Text(v.to_string()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_unit<E>(self) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Item, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Item, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Item::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> DeserializeSeed<'de> for FindLevel<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindLevel<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if found.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let deeper = self.max_depth == 0 || self.depth + 1 < self.max_depth;
            if self.fields.contains(&key) {
                if let Item::Text(v) = map.next_value::<Item>()? {
                    found = Some(v);
                }
            } else if deeper {
                // A nested object is searched; anything else is skipped.
                found = map.next_value_seed(Nested(FindLevel {
                    fields: self.fields,
                    depth: self.depth + 1,
                    max_depth: self.max_depth,
                }))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A value searched when it is an object, skipped otherwise.
struct Nested<'a>(FindLevel<'a>);

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<String> {
        strata_limits::Limits::default().log_level_fields
    }

    fn level(line: &str) -> String {
        detect(&Labels::default(), &Labels::default(), line, &fields(), 2).unwrap_or_default()
    }

    fn with_metadata(pairs: &[(&str, &str)], line: &str) -> Option<String> {
        detect(
            &Labels::default(),
            &Labels::from_pairs(pairs.iter().copied()),
            line,
            &fields(),
            2,
        )
    }

    #[test]
    fn lokis_examples() {
        // OTLP severity numbers win over the line.
        assert_eq!(
            with_metadata(&[("severity_number", "7")], "error").as_deref(),
            Some("debug")
        );
        assert_eq!(
            with_metadata(&[("severity_number", "foo")], "").as_deref(),
            Some("info")
        );
        assert_eq!(level("foo"), "unknown");
        assert_eq!(level("this is a warning log"), "warn");
        assert_eq!(level("this is a debug message"), "debug");
        assert_eq!(level("DEBUG: something happened"), "debug");
        assert_eq!(level("this is a critical message"), "unknown");
        assert_eq!(level("critical: something happened"), "critical");
        assert_eq!(level("[error] this is an error message"), "error");
        assert_eq!(level("ERROR: boom"), "unknown");
        assert_eq!(level("[ERROR] could not load info"), "info");
        assert_eq!(
            level(
                r#"{"foo":"bar","msg":"message with keyword error but it should not get picked up","level":"critical"}"#
            ),
            "critical"
        );
        assert_eq!(level(r#"{"foo":"bar","SEVERITY":"FATAL"}"#), "fatal");
        assert_eq!(level(r#"{"foo":"bar","level":"ERR"}"#), "error");
        assert_eq!(
            level(r#"{"foo":"bar","msg":"message with keyword INFO get picked up"}"#),
            "info"
        );
        assert_eq!(
            level(r#"foo=bar msg="message with info and not level should get picked up""#),
            "info"
        );
        assert_eq!(
            level(r#"foo=bar msg="message with keyword error" level=Warn"#),
            "warn"
        );
        assert_eq!(level("foo=bar LEVEL=Inf"), "info");
        assert_eq!(level("foo=bar LEVEL=Information"), "info");
        assert_eq!(
            level(r#"foo=bar msg="message with keyword but it should not get picked up" level=NA"#),
            "unknown"
        );
        assert_eq!(level(r#"Foo=bar MSG="x" Severity=critical"#), "critical");
        assert_eq!(level("msg=an error occurred severity=Wrn"), "warn");
    }

    #[test]
    fn labels_and_metadata_are_taken_verbatim_and_an_existing_level_kept() {
        let stream = Labels::from_pairs([("foo", "bar"), ("level", "debug")]);
        assert_eq!(
            detect(&stream, &Labels::default(), "0000", &fields(), 2).as_deref(),
            Some("debug")
        );
        assert_eq!(
            with_metadata(&[("severity", "WARNING")], "x").as_deref(),
            Some("WARNING")
        );
        assert_eq!(
            with_metadata(&[("detected_level", "trace")], "[ERROR] x"),
            None
        );
    }

    #[test]
    fn json_is_searched_in_document_order_to_the_depth_limit() {
        let f = fields();
        let get = |line: &str, depth| json_level(line, &f, depth);
        assert_eq!(
            get(r#"{"a": {"b": {"c": {"level": "warn"}}}}"#, 0).as_deref(),
            Some("warn")
        );
        assert_eq!(
            get(r#"{"severity": "error", "level": "info"}"#, 2).as_deref(),
            Some("error")
        );
        assert_eq!(
            get(r#"{"arr": [{"level": "debug"}], "level": "info"}"#, 2).as_deref(),
            Some("info")
        );
        assert_eq!(
            get(r#"{"level": 123, "severity": "warn"}"#, 2).as_deref(),
            Some("warn")
        );
        assert_eq!(
            get(r#"{"a": {"level": "debug"}, "level": "info"}"#, 1).as_deref(),
            Some("info")
        );
        assert_eq!(get(r#"{"a": {"level": "debug"}}"#, 1), None);
        assert_eq!(
            get(r#"{"a": {"level": "debug"}}"#, 2).as_deref(),
            Some("debug")
        );
        assert_eq!(get("{not json}", 2), None);
    }
}
