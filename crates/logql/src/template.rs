//! LogQL's template dialect for `line_format` and `label_format`, on the
//! shared Go-template engine (`strata_gotemplate`): fields are labels
//! (`.method`), `__line__` and `__timestamp__` are the entry's line and
//! time, and the functions are Loki's: `ToUpper`/`upper`, `ToLower`/`lower`,
//! `title`, `trim`, `trimSpace`, `trimPrefix`, `trimSuffix`, `replace`,
//! `regexReplaceAll`, `default`, `printf`, `len`, `contains`, `hasPrefix`,
//! `hasSuffix`, `alignLeft`, `alignRight`, `unixEpoch`. Templates are
//! checked at parse time, so a query never fails halfway over a template's
//! syntax; a rendering that would pass the engine's output bound gets
//! Loki's `TemplateFormatErr` instead.

use strata_gotemplate::funcs::Func;
use strata_gotemplate::{Dialect, RenderError, Scope, Term, Value};

/// What a template reads.
pub struct Context<'a> {
    pub label: &'a dyn Fn(&str) -> Option<String>,
    pub line: &'a str,
    /// Entry time, nanoseconds.
    pub ts: i64,
}

impl Scope for Context<'_> {
    fn field(&self, path: &str) -> Value {
        Value::Str((self.label)(path).unwrap_or_default())
    }
    fn var(&self, _: &str) -> Value {
        Value::Str(String::new())
    }
    fn call(&self, name: &str) -> Value {
        Value::Str(match name {
            "__line__" => self.line.to_string(),
            _ => self.ts.div_euclid(1_000_000).to_string(),
        })
    }
}

/// LogQL's choice of functions and terms.
struct LineFormat;

impl Dialect for LineFormat {
    fn function(name: &str) -> Option<(Func, Option<usize>)> {
        const LOKI: &[&str] = &[
            "ToUpper",
            "upper",
            "ToLower",
            "lower",
            "title",
            "trim",
            "trimSpace",
            "trimPrefix",
            "trimSuffix",
            "replace",
            "regexReplaceAll",
            "default",
            "printf",
            "len",
            "contains",
            "hasPrefix",
            "hasSuffix",
            "alignLeft",
            "alignRight",
            "unixEpoch",
        ];
        LOKI.contains(&name)
            .then(|| Func::by_go_name(name))
            .flatten()
    }

    fn scope_function(name: &str) -> bool {
        matches!(name, "__line__" | "__timestamp__")
    }

    fn check_term(term: &Term) -> Result<(), String> {
        match term {
            Term::Field(f) if !f.contains('.') => Ok(()),
            Term::Field(f) => Err(format!("unsupported field \".{f}\" in template")),
            Term::Var(v) => Err(format!("unsupported variable \"${v}\" in template")),
            _ => Ok(()),
        }
    }
}

/// A parsed `line_format` or `label_format` template.
#[derive(Debug, Clone)]
pub struct Template(strata_gotemplate::Template, String);

impl Template {
    /// Parses a template; errors name the unsupported construct.
    pub fn parse(src: &str) -> Result<Self, String> {
        strata_gotemplate::Template::parse::<LineFormat>(src).map(|t| Self(t, src.to_string()))
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.1
    }

    /// Renders the template for one entry.
    pub fn render(&self, ctx: &Context<'_>) -> Result<String, RenderError> {
        self.0.render(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, labels: &[(&str, &str)], line: &str) -> String {
        let f = |n: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        Template::parse(t)
            .unwrap()
            .render(&Context {
                label: &f,
                line,
                ts: 1_700_000_000_123_000_000,
            })
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn sizes_from_the_query_are_bounded_before_allocating() {
        let l = [("app", "api")];
        let too_large = |t: &str| {
            let out = render(t, &l, "aaaa");
            assert!(
                out.starts_with("error: template function"),
                "{t}: {out:.80}"
            );
        };
        too_large("{{ alignLeft 1000000000000 .app }}");
        too_large("{{ alignRight 1048577 .app }}");
        let doubling = r#" | replace "a" "aaaaaaaaaaaaaaaa""#.repeat(8);
        too_large(&format!("{{{{ __line__{doubling} }}}}"));
        too_large(&format!(
            r#"{{{{ regexReplaceAll "a" __line__ "{}" }}}}"#,
            "$0".repeat(300_000)
        ));
        too_large(&"{{ alignLeft 600000 .app }}".repeat(2));
        // Within the budget everything still works.
        assert_eq!(render("{{ alignLeft 5 .app }}|", &l, ""), "api  |");
        assert_eq!(
            render(
                r#"{{ regexReplaceAll "(a)" __line__ "<$1>" | replace "a" "bb" }}"#,
                &l,
                "xa"
            ),
            "x<bb>"
        );
    }

    #[test]
    fn fields_functions_and_pipes() {
        let l = [("method", "get"), ("path", "/api/users"), ("ms", "12")];
        assert_eq!(render("{{.method}} {{.path}}", &l, ""), "get /api/users");
        assert_eq!(
            render(
                r#"{{ .method | ToUpper }} {{ .path | trimPrefix "/api" }}"#,
                &l,
                ""
            ),
            "GET /users"
        );
        assert_eq!(render(r#"{{ .nope | default "-" }}"#, &l, ""), "-");
        assert_eq!(render("{{ __line__ | upper }}!", &l, "hi"), "HI!");
        assert_eq!(render("{{ __timestamp__ }}", &l, ""), "1700000000123");
        assert_eq!(
            render(r#"took {{ printf "%sms" .ms }}"#, &l, ""),
            "took 12ms"
        );
        assert_eq!(
            render(
                r#"{{ regexReplaceAll "[0-9]+" .path "N" }}"#,
                &[("path", "/u/42")],
                ""
            ),
            "/u/N"
        );
        assert_eq!(render("a  {{- .ms -}}  b", &l, ""), "a12b");
        assert!(Template::parse("{{ if .x }}y{{ end }}").is_err());
        assert!(Template::parse("{{ nosuch .x }}").is_err());
        assert!(Template::parse("{{ .x ").is_err());
    }
}
