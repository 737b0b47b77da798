//! Request parameters of the Prometheus API: query string and form body
//! merged (repeated keys such as `match[]` kept), with Prometheus's time and
//! duration formats.

use axum::body::Bytes;

/// Decoded `key=value` pairs in request order.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Merges the query string and an optional urlencoded form body.
    pub fn parse(query: Option<&str>, form: Option<&Bytes>) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            pairs.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        if let Some(b) = form {
            pairs.extend(url::form_urlencoded::parse(b).into_owned());
        }
        Self { pairs }
    }

    /// First non-empty value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Timestamp parameter in ms, or `default` when absent.
    pub fn time(&self, key: &str, default: i64) -> Result<i64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(s) => strata_model::api_time::prometheus_time_ms(s).ok_or_else(|| {
                format!("invalid parameter {key:?}: cannot parse {s:?} to a valid timestamp")
            }),
        }
    }

    /// Required timestamp parameter in ms.
    pub fn required_time(&self, key: &str) -> Result<i64, String> {
        match self.get(key) {
            None => Err(format!(
                "invalid parameter {key:?}: cannot parse \"\" to a valid timestamp"
            )),
            Some(_) => self.time(key, 0),
        }
    }

    /// The `step` of a range query in ms.
    pub fn step(&self) -> Result<i64, String> {
        let s = self.get("step").ok_or_else(|| {
            "invalid parameter \"step\": cannot parse \"\" to a valid duration".to_string()
        })?;
        strata_promql::parse_duration_param(s).map_err(|_| {
            format!("invalid parameter \"step\": cannot parse {s:?} to a valid duration")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_form_params() {
        let body = Bytes::from_static(b"match[]=b&query=up");
        let p = Params::parse(Some("match[]=a&time=1"), Some(&body));
        assert_eq!(p.all("match[]"), vec!["a", "b"]);
        assert_eq!(p.get("query"), Some("up"));
        assert_eq!(p.time("time", 0), Ok(1000));
    }
}
