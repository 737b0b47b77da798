//! How roles reach each other's gRPC servers: one place builds every
//! connection (ingester clients, ring watchers, Raft peers), so mutual TLS,
//! when configured, covers all of them.
//!
//! The process sets its client TLS once at start-up ([`set_client_tls`],
//! from `-ingester.client.tls-*`, Mimir's flag names); [`endpoint`] then
//! dials `https://` with the CA, client certificate and server name given.
//! The server side ([`server_tls`], from `-server.grpc-tls-*`) requires and
//! verifies a client certificate signed by the client CA, so a process
//! without one can neither push, read, vote nor change the ring.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Client side TLS of the connections between roles.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClientTls {
    pub tls_enabled: bool,
    /// PEM certificate this process presents to the servers it calls.
    pub tls_cert_path: String,
    pub tls_key_path: String,
    /// PEM CA that signed the servers' certificates.
    pub tls_ca_path: String,
    /// Name the servers' certificates must carry (default: the host dialed).
    pub tls_server_name: String,
}

/// Server side TLS of this process's gRPC server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerTls {
    /// PEM certificate and key of this server; both empty: plaintext.
    pub cert_path: String,
    pub key_path: String,
    /// PEM CA clients' certificates must be signed by.
    pub client_ca_path: String,
    /// `RequireAndVerifyClientCert` (the default) or `NoClientCert`.
    pub client_auth: String,
}

static CLIENT_TLS: OnceLock<Option<ClientTlsConfig>> = OnceLock::new();

fn read(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {what} {path}: {e}"))
}

/// Builds the client TLS of `cfg` (`None` when off).
pub fn client_tls_config(cfg: &ClientTls) -> Result<Option<ClientTlsConfig>, String> {
    if !cfg.tls_enabled {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new();
    if !cfg.tls_ca_path.is_empty() {
        tls = tls.ca_certificate(Certificate::from_pem(read(
            "-ingester.client.tls-ca-path",
            &cfg.tls_ca_path,
        )?));
    }
    match (cfg.tls_cert_path.is_empty(), cfg.tls_key_path.is_empty()) {
        (false, false) => {
            let cert = read("-ingester.client.tls-cert-path", &cfg.tls_cert_path)?;
            let key = read("-ingester.client.tls-key-path", &cfg.tls_key_path)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (true, true) => {}
        _ => {
            return Err(
                "-ingester.client.tls-cert-path and -ingester.client.tls-key-path go together"
                    .into(),
            );
        }
    }
    if !cfg.tls_server_name.is_empty() {
        tls = tls.domain_name(cfg.tls_server_name.clone());
    }
    Ok(Some(tls))
}

/// Sets this process's client TLS, once, before any connection is made.
pub fn set_client_tls(cfg: &ClientTls) -> Result<(), String> {
    let tls = client_tls_config(cfg)?;
    CLIENT_TLS
        .set(tls)
        .map_err(|_| "the gRPC client TLS was set twice".to_string())
}

/// The server TLS of `cfg` (`None`: plaintext).
pub fn server_tls(cfg: &ServerTls) -> Result<Option<ServerTlsConfig>, String> {
    match (cfg.cert_path.is_empty(), cfg.key_path.is_empty()) {
        (true, true) => {
            if !cfg.client_ca_path.is_empty() {
                return Err(
                    "-server.grpc-tls-ca-path needs -server.grpc-tls-cert-path and -key-path"
                        .into(),
                );
            }
            return Ok(None);
        }
        (false, false) => {}
        _ => {
            return Err(
                "-server.grpc-tls-cert-path and -server.grpc-tls-key-path go together".into(),
            );
        }
    }
    let cert = read("-server.grpc-tls-cert-path", &cfg.cert_path)?;
    let key = read("-server.grpc-tls-key-path", &cfg.key_path)?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    let require = match cfg.client_auth.as_str() {
        "" | "RequireAndVerifyClientCert" => true,
        "NoClientCert" => false,
        other => {
            return Err(format!(
                "-server.grpc-tls-client-auth={other}: want RequireAndVerifyClientCert or NoClientCert"
            ));
        }
    };
    if require {
        if cfg.client_ca_path.is_empty() {
            return Err("verifying client certificates needs -server.grpc-tls-ca-path (or -server.grpc-tls-client-auth=NoClientCert)".into());
        }
        let ca = read("-server.grpc-tls-ca-path", &cfg.client_ca_path)?;
        tls = tls
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(false);
    }
    Ok(Some(tls))
}

/// An endpoint for `addr` (`host:port`): TLS when the process set it.
pub fn endpoint(
    addr: &str,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Endpoint, String> {
    let tls = CLIENT_TLS.get().and_then(Option::as_ref);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut e = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| format!("bad gRPC address {addr:?}: {e}"))?
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        e = e
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS for {addr}: {e}"))?;
    }
    Ok(e)
}
