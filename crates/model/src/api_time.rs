//! The timestamp formats of the query APIs: Prometheus's (Unix seconds,
//! fractional, or RFC 3339) and Loki's (also integer nanoseconds), shared by
//! the API and the query-frontend, which re-cuts the same parameters.

const NS_PER_SEC: i64 = 1_000_000_000;

/// A Prometheus API timestamp (Unix seconds, float, or RFC 3339) in ms.
pub fn prometheus_time_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        let secs = f.trunc();
        let ms = ((f - secs) * 1000.0).round();
        // Past what an i64 of ms holds is no timestamp (the cast would saturate).
        if secs.abs() >= 9.2e15 {
            return None;
        }
        return (secs as i64).checked_mul(1000)?.checked_add(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Loki's timestamp formats: RFC 3339, float seconds, or an integer that is
/// seconds up to 10 digits and nanoseconds beyond; in ns.
pub fn loki_time_ns(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return d.timestamp_nanos_opt();
    }
    if s.contains('.') {
        let f: f64 = s.parse().ok()?;
        return f.is_finite().then_some((f * 1e9) as i64);
    }
    let n: i64 = s.parse().ok()?;
    let digits = s.trim_start_matches('-').len();
    Some(if digits <= 10 {
        n.saturating_mul(NS_PER_SEC)
    } else {
        n
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_times() {
        assert_eq!(
            prometheus_time_ms("1435781451.781"),
            Some(1_435_781_451_781)
        );
        assert_eq!(prometheus_time_ms("1435781451"), Some(1_435_781_451_000));
        assert_eq!(
            prometheus_time_ms("2015-07-01T20:10:51.781Z"),
            Some(1_435_781_451_781)
        );
        assert_eq!(
            prometheus_time_ms("2015-07-01T22:10:51.781+02:00"),
            Some(1_435_781_451_781)
        );
        assert_eq!(prometheus_time_ms("yesterday"), None);
        assert_eq!(prometheus_time_ms("1e300"), None);
        assert_eq!(prometheus_time_ms("-9.3e15"), None);
        assert_eq!(
            prometheus_time_ms("-9.1e15"),
            Some(-9_100_000_000_000_000_000)
        );
    }

    #[test]
    fn loki_timestamps() {
        assert_eq!(loki_time_ns("1700000000"), Some(1_700_000_000 * NS_PER_SEC));
        assert_eq!(
            loki_time_ns("1700000000000000001"),
            Some(1_700_000_000_000_000_001)
        );
        assert_eq!(
            loki_time_ns("1700000000.5"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            loki_time_ns("2023-11-14T22:13:20Z"),
            Some(1_700_000_000 * NS_PER_SEC)
        );
        assert_eq!(loki_time_ns("yesterday"), None);
    }
}
