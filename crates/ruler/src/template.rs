//! Prometheus's alert template dialect for labels and annotations, on the
//! shared Go-template engine (`strata_gotemplate`): `{{ $labels.name }}` /
//! `{{ .Labels.name }}`, `{{ $value }}` / `{{ .Value }}`,
//! `{{ $externalLabels.name }}` / `{{ .ExternalLabels.name }}`, and the
//! functions `humanize`, `humanize1024`, `humanizePercentage`,
//! `humanizeDuration`, `printf`, `toUpper`, `toLower`, either called
//! (`humanize $value`) or piped (`$value | humanize`). Anything else is
//! refused when the rule is saved, so a rule never fails at evaluation time
//! over its template.

use std::collections::BTreeMap;

use strata_gotemplate::funcs::Func;
use strata_gotemplate::{Dialect, Scope, Template, Term, Value};

/// What a template can refer to.
pub struct Context<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub value: f64,
}

impl Context<'_> {
    fn lookup(&self, path: &str) -> Value {
        let label = |map: &BTreeMap<String, String>, name: &str| {
            Value::Str(map.get(name).cloned().unwrap_or_default())
        };
        match path.split_once('.') {
            None => Value::Num(self.value),
            Some(("labels" | "Labels", name)) => label(self.labels, name),
            Some((_, name)) => label(self.external_labels, name),
        }
    }
}

impl Scope for Context<'_> {
    fn field(&self, path: &str) -> Value {
        self.lookup(path)
    }
    fn var(&self, path: &str) -> Value {
        self.lookup(path)
    }
}

/// Prometheus's choice of functions and terms (what alert rules use).
struct AlertTemplate;

impl Dialect for AlertTemplate {
    fn function(name: &str) -> Option<(Func, Option<usize>)> {
        const PROMETHEUS: &[&str] = &[
            "humanize",
            "humanize1024",
            "humanizePercentage",
            "humanizeDuration",
            "printf",
            "toUpper",
            "toLower",
        ];
        PROMETHEUS
            .contains(&name)
            .then(|| Func::by_go_name(name))
            .flatten()
    }

    fn check_term(term: &Term) -> Result<(), String> {
        let named = |path: &str, maps: [&str; 2]| {
            path.split_once('.')
                .is_some_and(|(m, name)| maps.contains(&m) && !name.contains('.'))
        };
        let ok = match term {
            Term::Var(v) => v == "value" || named(v, ["labels", "externalLabels"]),
            Term::Field(f) => f == "Value" || named(f, ["Labels", "ExternalLabels"]),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("unsupported template operand {term:?}"))
        }
    }
}

/// Checks that a template uses only what this dialect supports, and that
/// it renders (a `printf` precision past the bound is refused here).
pub fn check(tmpl: &str) -> Result<(), String> {
    let labels = BTreeMap::new();
    expand(
        tmpl,
        &Context {
            labels: &labels,
            external_labels: &labels,
            value: 1.0,
        },
    )
    .map(|_| ())
}

/// Expands a template.
pub fn expand(tmpl: &str, ctx: &Context<'_>) -> Result<String, String> {
    Template::parse::<AlertTemplate>(tmpl)?
        .render(ctx)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_expand(t: &str, value: f64) -> Result<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert("job".to_string(), "api".to_string());
        let ext = BTreeMap::from([("cluster".to_string(), "eu1".to_string())]);
        expand(
            t,
            &Context {
                labels: &labels,
                external_labels: &ext,
                value,
            },
        )
    }

    #[test]
    fn expands_what_alert_rules_use() {
        assert_eq!(
            ctx_expand("{{ $labels.job }} is at {{ $value }}", 12.5).unwrap(),
            "api is at 12.5"
        );
        assert_eq!(
            ctx_expand("{{ .Labels.job }}/{{ .Value }}", 1.0).unwrap(),
            "api/1"
        );
        assert_eq!(
            ctx_expand("{{ $externalLabels.cluster }}", 0.0).unwrap(),
            "eu1"
        );
        assert_eq!(
            ctx_expand("{{ $value | humanize }}", 1234567.0).unwrap(),
            "1.235M"
        );
        assert_eq!(ctx_expand("{{ humanize $value }}", 0.0012).unwrap(), "1.2m");
        assert_eq!(
            ctx_expand("{{ humanize1024 $value }}", 2048.0).unwrap(),
            "2ki"
        );
        assert_eq!(
            ctx_expand("{{ $value | humanizePercentage }}", 0.1234).unwrap(),
            "12.34%"
        );
        assert_eq!(
            ctx_expand("{{ humanizeDuration $value }}", 3725.0).unwrap(),
            "1h 2m 5s"
        );
        assert_eq!(
            ctx_expand("{{ printf \"%.2f\" $value }} ms", 12.3456).unwrap(),
            "12.35 ms"
        );
        assert_eq!(ctx_expand("{{ $labels.missing }}", 0.0).unwrap(), "");
        assert_eq!(
            ctx_expand("{{ $labels.job | toUpper }}", 0.0).unwrap(),
            "API"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(check("{{ range $labels }}x{{ end }}").is_err());
        // A precision from the rule is bounded before anything is formatted.
        // A multi-byte character where the verb should be (found by fuzzing).
        assert!(check("{{ printf \"%.2\u{fffd}\" $value }}").is_err());
        let e = check("{{ printf \"%.1000000000f\" $value }}").unwrap_err();
        assert!(e.contains("precision"), "{e}");
        assert!(check("{{ printf \"%.100000000000000000000000g\" $value }}").is_err());
        assert!(check("{{ $labels.job ").is_err());
        assert!(check("{{ query \"up\" }}").is_err());
        assert!(check("plain text").is_ok());
    }
}
