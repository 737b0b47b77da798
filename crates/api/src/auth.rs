//! Opt-in HTTP authentication: bearer tokens from a file, each scoped to
//! tenants and to what it may do.
//!
//! With `-auth.tokens-file` set, every request but `/health`, `/ready` and
//! `/metrics` needs a token, as `Authorization: Bearer <token>` or as the
//! password of basic auth (what Prometheus's `remote_write`, Grafana's data
//! sources and Loki clients can all send). The file lists tokens by their
//! SHA-256, never in clear, and is re-read every
//! `-auth.tokens-reload-period` (a file that does not parse keeps the
//! previous tokens):
//!
//! ```yaml
//! tokens:
//!   - name: team-a-prometheus        # shown in logs, never the token
//!     sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//!     tenants: [team-a]              # "*": any tenant
//!     scopes: [write]                # read, write, rules, admin
//! ```
//!
//! The tenant is `X-Scope-OrgID`, else the basic-auth user name, else the
//! token's only tenant; it must be one of the token's tenants (403
//! otherwise), and the request's action must be in the token's scopes
//! (403): `write` for pushes, `read` for queries and the rule and alert
//! status, `rules` for the rules configuration API, `admin` for `/ring`
//! (and its forget action) and `/config`. No or an unknown token: 401.
//! Presented tokens are hashed and compared with every stored hash in
//! constant time.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::RwLock;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;
use subtle::ConstantTimeEq;

static FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_auth_failures_total",
            "Requests refused by authentication, by reason (missing, invalid, tenant, scope).",
        ),
        &["reason"],
    )
    .expect("valid metric definition")
});

static RELOAD_OK: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_auth_tokens_last_reload_successful",
        "1 when the tokens file was read and parsed the last time it was checked.",
    )
    .expect("valid metric definition")
});

/// Registers the authentication metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(FAILURES.clone()))?;
    for reason in ["missing", "invalid", "tenant"] {
        FAILURES.with_label_values(&[reason]);
    }
    r.register(Box::new(RELOAD_OK.clone()))
}

/// What a request does, for a token's scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Rules,
    Admin,
}

/// Errors reading the tokens file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    tenants: Vec<String>,
    scopes: BTreeSet<Scope>,
}

/// One accepted token.
#[derive(Debug, Clone)]
struct Token {
    name: String,
    digest: [u8; 32],
    /// `None`: any tenant.
    tenants: Option<BTreeSet<String>>,
    scopes: BTreeSet<Scope>,
}

fn parse_tokens(text: &str) -> Result<Vec<Token>, String> {
    let file: TokensFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    file.tokens
        .into_iter()
        .map(|t| {
            let hex = t.sha256.trim().to_ascii_lowercase();
            let mut digest = [0u8; 32];
            if hex.len() != 64 {
                return Err(format!(
                    "token {:?}: sha256 must be 64 hex digits (the SHA-256 of the token, e.g. `printf %s \"$TOKEN\" | sha256sum`)",
                    t.name
                ));
            }
            for (i, d) in digest.iter_mut().enumerate() {
                *d = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|_| format!("token {:?}: sha256 is not hex", t.name))?;
            }
            if t.tenants.is_empty() {
                return Err(format!("token {:?}: lists no tenants (\"*\" for any)", t.name));
            }
            if t.scopes.is_empty() {
                return Err(format!("token {:?}: lists no scopes", t.name));
            }
            let tenants = if t.tenants.iter().any(|x| x == "*") {
                None
            } else {
                Some(t.tenants.into_iter().collect())
            };
            Ok(Token {
                name: t.name,
                digest,
                tenants,
                scopes: t.scopes,
            })
        })
        .collect()
}

/// The accepted tokens, reloaded from their file.
pub struct Authenticator {
    tokens: RwLock<Vec<Token>>,
    multitenancy: bool,
}

impl Authenticator {
    /// Reads `path` (an error is fatal at start-up), then re-reads it every
    /// `period` in the background.
    pub fn watch_file(
        path: PathBuf,
        period: Duration,
        multitenancy: bool,
    ) -> Result<Arc<Self>, AuthError> {
        let text = std::fs::read_to_string(&path).map_err(|source| AuthError::Read {
            path: path.clone(),
            source,
        })?;
        let tokens = parse_tokens(&text).map_err(|message| AuthError::Invalid {
            path: path.clone(),
            message,
        })?;
        tracing::info!(path = %path.display(), tokens = tokens.len(), "authentication tokens loaded");
        RELOAD_OK.set(1);
        let this = Arc::new(Self {
            tokens: RwLock::new(tokens),
            multitenancy,
        });
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            let mut last = text;
            let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                let text = match tokio::fs::read_to_string(&path).await {
                    Ok(t) => t,
                    Err(e) => {
                        RELOAD_OK.set(0);
                        tracing::error!(path = %path.display(), error = %e, "reading the tokens file failed; keeping the previous tokens");
                        continue;
                    }
                };
                if text == last {
                    continue;
                }
                match parse_tokens(&text) {
                    Ok(tokens) => {
                        tracing::info!(path = %path.display(), tokens = tokens.len(), "authentication tokens reloaded");
                        *this.tokens.write() = tokens;
                        RELOAD_OK.set(1);
                        last = text;
                    }
                    Err(e) => {
                        RELOAD_OK.set(0);
                        tracing::error!(path = %path.display(), error = %e, "the tokens file does not parse; keeping the previous tokens");
                    }
                }
            }
        });
        Ok(this)
    }

    /// The token whose hash is `digest`, compared with every stored one in
    /// constant time (no early exit on the first match either).
    fn find(&self, presented: &[u8]) -> Option<Token> {
        let digest = ring::digest::digest(&ring::digest::SHA256, presented);
        let mut found = None;
        for t in self.tokens.read().iter() {
            let equal: bool = t.digest.as_slice().ct_eq(digest.as_ref()).into();
            if equal && found.is_none() {
                found = Some(t.clone());
            }
        }
        found
    }
}

/// The scope a request needs, or `None` for the open probe endpoints.
fn required_scope(path: &str) -> Option<Scope> {
    let path = path.strip_prefix("/prometheus").unwrap_or(path);
    match path {
        "/health" | "/ready" | "/metrics" => None,
        "/api/v1/push"
        | "/api/v1/write"
        | "/loki/api/v1/push"
        | "/api/prom/push"
        | "/otlp/v1/metrics"
        | "/api/v1/otlp/v1/metrics"
        | "/otlp/v1/logs" => Some(Scope::Write),
        "/config" => Some(Scope::Admin),
        p if p == "/ring" || p.starts_with("/ring/") => Some(Scope::Admin),
        p if p.starts_with("/config/v1/rules")
            || p.starts_with("/loki/api/v1/rules")
            || p.starts_with("/api/prom/rules") =>
        {
            Some(Scope::Rules)
        }
        _ => Some(Scope::Read),
    }
}

/// The presented token and basic-auth user name, if any.
fn credentials(req: &Request) -> Option<(Vec<u8>, Option<String>)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, rest) = value.split_once(' ')?;
    if kind.eq_ignore_ascii_case("bearer") {
        return Some((rest.trim().as_bytes().to_vec(), None));
    }
    if kind.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        let user = (!user.is_empty()).then(|| user.to_string());
        return Some((password.as_bytes().to_vec(), user));
    }
    None
}

fn refuse(status: StatusCode, reason: &'static str, message: String) -> Response {
    FAILURES.with_label_values(&[reason]).inc();
    let mut resp = (status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"strata\""),
        );
    }
    resp
}

/// The middleware: authenticates, resolves the tenant into `X-Scope-OrgID`
/// and checks the token's tenants and scopes.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(scope) = required_scope(req.uri().path()) else {
        return next.run(req).await;
    };
    let Some((presented, user)) = credentials(&req) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing",
            "authentication required: send a token as `Authorization: Bearer <token>` or as the basic-auth password".into(),
        );
    };
    let Some(token) = auth.find(&presented) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid", "invalid token".into());
    };
    let header_tenant = req
        .headers()
        .get("X-Scope-OrgID")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    let only_tenant = token
        .tenants
        .as_ref()
        .filter(|t| t.len() == 1)
        .and_then(|t| t.iter().next().cloned());
    let tenant = if auth.multitenancy {
        match header_tenant.or(user).or(only_tenant) {
            Some(t) => t,
            None => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "tenant",
                    format!(
                        "token {:?} may act for several tenants: name one in X-Scope-OrgID",
                        token.name
                    ),
                );
            }
        }
    } else {
        crate::NO_AUTH_TENANT.to_string()
    };
    if token.tenants.as_ref().is_some_and(|t| !t.contains(&tenant)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "tenant",
            format!(
                "token {:?} is not allowed to act for tenant {tenant:?}",
                token.name
            ),
        );
    }
    if !token.scopes.contains(&scope) {
        return refuse(
            StatusCode::FORBIDDEN,
            "scope",
            format!(
                "token {:?} does not have the {:?} scope this request needs",
                token.name,
                format!("{scope:?}").to_lowercase()
            ),
        );
    }
    if auth.multitenancy
        && let Ok(v) = HeaderValue::from_str(&tenant)
    {
        req.headers_mut().insert("X-Scope-OrgID", v);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(token: &str) -> String {
        ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn tokens_parse_and_are_found_by_hash() {
        let text = format!(
            "tokens:\n  - name: a\n    sha256: {}\n    tenants: [team-a]\n    scopes: [read, write]\n  - name: ops\n    sha256: {}\n    tenants: ['*']\n    scopes: [admin]\n",
            sha("secret-a"),
            sha("secret-ops")
        );
        let tokens = parse_tokens(&text).expect("parses");
        let auth = Authenticator {
            tokens: RwLock::new(tokens),
            multitenancy: true,
        };
        let a = auth.find(b"secret-a").expect("found");
        assert_eq!(a.name, "a");
        assert!(a.scopes.contains(&Scope::Write) && !a.scopes.contains(&Scope::Rules));
        assert!(auth.find(b"secret-ops").expect("found").tenants.is_none());
        assert!(auth.find(b"secret-b").is_none());
        assert!(auth.find(b"").is_none());
    }

    #[test]
    fn bad_files_are_refused_with_the_token_named() {
        let e = parse_tokens(
            "tokens:\n  - name: x\n    sha256: abc\n    tenants: [a]\n    scopes: [read]\n",
        )
        .unwrap_err();
        assert!(e.contains("\"x\"") && e.contains("64 hex"), "{e}");
        assert!(
            parse_tokens(
                "tokens:\n  - name: x\n    sha256: abc\n    tenants: [a]\n    scopes: [fly]\n"
            )
            .is_err()
        );
        assert!(parse_tokens("tokenz: []\n").is_err());
    }

    #[test]
    fn scopes_by_route() {
        assert_eq!(required_scope("/health"), None);
        assert_eq!(required_scope("/api/v1/push"), Some(Scope::Write));
        assert_eq!(required_scope("/loki/api/v1/push"), Some(Scope::Write));
        assert_eq!(required_scope("/otlp/v1/metrics"), Some(Scope::Write));
        assert_eq!(
            required_scope("/api/v1/otlp/v1/metrics"),
            Some(Scope::Write)
        );
        assert_eq!(
            required_scope("/prometheus/api/v1/query"),
            Some(Scope::Read)
        );
        assert_eq!(
            required_scope("/prometheus/api/v1/rules"),
            Some(Scope::Read)
        );
        assert_eq!(
            required_scope("/prometheus/config/v1/rules/ns"),
            Some(Scope::Rules)
        );
        assert_eq!(required_scope("/loki/api/v1/rules"), Some(Scope::Rules));
        assert_eq!(required_scope("/api/prom/rules/ns/g"), Some(Scope::Rules));
        assert_eq!(required_scope("/ring"), Some(Scope::Admin));
        assert_eq!(required_scope("/config"), Some(Scope::Admin));
    }
}
