//! OpenTelemetry metric names and units as Prometheus names, following
//! Prometheus 3's OTLP translation: names are cut into words at every
//! character a Prometheus name may not hold, and (with suffixes) the unit
//! and the type are appended as words, `http.server.duration` in `ms`
//! becoming `http_server_duration_milliseconds`.

/// What a metric is, as far as its name is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Gauge,
    /// A monotonic sum: a counter, named with `_total`.
    Counter,
    /// Everything else (non-monotonic sums, histograms, summaries).
    Other,
}

/// How metric names are built, Prometheus's `translation_strategy` values
/// that keep names within the classic character set (Strata validates
/// names with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameStrategy {
    /// `UnderscoreEscapingWithSuffixes`, Prometheus 3's default.
    #[default]
    WithSuffixes,
    /// `UnderscoreEscapingWithoutSuffixes`, Mimir's default.
    WithoutSuffixes,
}

/// The Prometheus name of a metric, or why it has none.
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    strategy: NameStrategy,
) -> Result<String, String> {
    let out = match strategy {
        NameStrategy::WithSuffixes => with_suffixes(name, unit, kind),
        NameStrategy::WithoutSuffixes => name
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '_'))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("_"),
    };
    if out.is_empty() {
        return Err(format!(
            "metric name {name:?} has no character a Prometheus name can hold"
        ));
    }
    if out.bytes().all(|b| b == b'_') && out != name {
        return Err(format!(
            "metric name {name:?} translates to underscores only"
        ));
    }
    if out.as_bytes()[0].is_ascii_digit() {
        return Ok(format!("_{out}"));
    }
    Ok(out)
}

fn with_suffixes(name: &str, unit: &str, kind: NameKind) -> String {
    let mut words: Vec<&str> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .collect();
    let (main, per) = unit_words(unit);
    // A unit already among the name's words is not repeated.
    for suffix in [&main, &per] {
        if !suffix.is_empty() && !words.contains(&suffix.as_str()) {
            words.push(suffix);
        }
    }
    if kind == NameKind::Counter {
        words.retain(|w| *w != "total");
        words.push("total");
    }
    if kind == NameKind::Gauge && unit == "1" {
        words.retain(|w| *w != "ratio");
        words.push("ratio");
    }
    words.join("_")
}

/// A unit as name words: the main unit and `per_<unit>`, each spelled out
/// (`By/s` gives `bytes` and `per_second`); units in braces are
/// annotations and give nothing.
fn unit_words(unit: &str) -> (String, String) {
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), p.trim()),
        None => (unit.trim(), ""),
    };
    let annotation = |u: &str| u.is_empty() || u.contains('{') || u.contains('}');
    let mut main = if annotation(main) {
        String::new()
    } else {
        clean(main_unit(main))
    };
    let mut per = if annotation(per) {
        String::new()
    } else {
        clean(&format!("per_{}", per_unit(per)))
    };
    if per == "per_" {
        per.clear();
    }
    if !per.is_empty() && main.ends_with('_') {
        main.pop();
    }
    (main, per)
}

/// The unit as metadata gives it: `bytes_per_second` for `By/s`, nothing
/// for `1` or an annotation.
pub fn unit_text(unit: &str) -> String {
    let (main, per) = unit_words(unit);
    let joined = match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        (true, _) => per,
    };
    joined.trim_matches('_').to_string()
}

/// Characters a name may not hold become `_`, runs of `_` one, and one
/// leading `_` goes.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with('_') {
        out.remove(0);
    }
    out
}

/// UCUM units as Prometheus spells them (unknown units are kept).
fn main_unit(u: &str) -> &str {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The denominator of a rate unit, singular (`per_second`).
fn per_unit(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, unit: &str, kind: NameKind) -> String {
        metric_name(name, unit, kind, NameStrategy::WithSuffixes).unwrap()
    }

    #[test]
    fn names_with_suffixes_as_prometheus_3_builds_them() {
        use NameKind::*;
        assert_eq!(
            with("http.request.duration", "ms", Other),
            "http_request_duration_milliseconds"
        );
        assert_eq!(
            with("throughput", "By/s", Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(with("cpu", "1", Gauge), "cpu_ratio");
        assert_eq!(with("cpu", "1", Other), "cpu");
        assert_eq!(
            with("process.cpu.time", "s", Counter),
            "process_cpu_time_seconds_total"
        );
        assert_eq!(with("total.requests", "", Counter), "requests_total");
        assert_eq!(with("requests_total", "", Counter), "requests_total");
        assert_eq!(with("http.requests", "1", Counter), "http_requests_total");
        assert_eq!(
            with("response_time_seconds", "s", Gauge),
            "response_time_seconds"
        );
        assert_eq!(with("seconds_foo", "s", Gauge), "seconds_foo");
        assert_eq!(
            with("requests_per_second", "1/s", Gauge),
            "requests_per_second_per_second"
        );
        assert_eq!(
            with(
                "metric__with__multiple__underscores",
                "unit__multiple__underscores",
                Gauge
            ),
            "metric_with_multiple_underscores_unit_multiple_underscores"
        );
        assert_eq!(
            with("custom_metric", "unit@with#special/chars", Gauge),
            "custom_metric_unit_with_special_per_chars"
        );
        assert_eq!(with("metric", " By / s ", Gauge), "metric_bytes_per_second");
        assert_eq!(with("metric", "By/", Gauge), "metric_bytes");
        assert_eq!(with("metric", "/", Gauge), "metric");
        assert_eq!(with("queue.size", "{items}", Gauge), "queue_size");
        assert_eq!(with("2xx.count", "", Gauge), "_2xx_count");
        assert_eq!(with("ns:metric", "", Gauge), "ns:metric");
        assert!(metric_name("@#$%", "", Gauge, NameStrategy::WithSuffixes).is_err());
    }

    #[test]
    fn names_without_suffixes() {
        let without =
            |n: &str| metric_name(n, "s", NameKind::Counter, NameStrategy::WithoutSuffixes);
        assert_eq!(without("metric@@##$$name").unwrap(), "metric_name");
        assert_eq!(
            without("http.server.duration").unwrap(),
            "http_server_duration"
        );
        assert_eq!(without("keep__double").unwrap(), "keep__double");
        assert_eq!(without("123metric").unwrap(), "_123metric");
        assert_eq!(without("___").unwrap(), "___");
        assert!(without("@_#_$_%").is_err());
    }

    #[test]
    fn units_in_metadata() {
        assert_eq!(unit_text("1"), "");
        assert_eq!(unit_text("{req}"), "");
        assert_eq!(unit_text("By/s"), "bytes_per_second");
        assert_eq!(unit_text("1/s"), "per_second");
        assert_eq!(unit_text("ms"), "milliseconds");
    }
}
