//! The `/ring` status page (HTML and JSON), like Mimir's: every instance,
//! its state, health, last heartbeat, tokens and share of the token space,
//! with a button to forget an instance.

use serde::Serialize;

use crate::desc::RingDesc;
use crate::replication::RingView;

/// One row of the ring page.
#[derive(Debug, Serialize)]
pub struct InstanceRow {
    /// Instance id.
    pub id: String,
    /// Roles it runs.
    pub roles: Vec<String>,
    /// Zone.
    pub zone: String,
    /// Lifecycle state.
    pub state: &'static str,
    /// `ACTIVE` heartbeat within the timeout: "healthy", else "unhealthy".
    pub health: &'static str,
    /// gRPC address.
    pub address: String,
    /// HTTP address.
    pub http_address: String,
    /// Milliseconds since the last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Unix ms of the last heartbeat.
    pub heartbeat_ms: i64,
    /// Tokens owned.
    pub tokens: usize,
    /// Percentage of the series hash space owned (ingesters).
    pub ownership_percent: f64,
    /// Percentage of the block hash space owned (store-gateways), as first
    /// owner; each block has replication-factor owners.
    pub block_ownership_percent: f64,
    /// Blocks a store-gateway owns and has loaded, as its
    /// `/store-gateway/tenants` page lists them (filled in by the page's
    /// server; `None` for other roles or a gateway that did not answer).
    pub owned_blocks: Option<u64>,
}

/// The rows of the page, ordered by id.
pub fn rows(desc: &std::sync::Arc<RingDesc>, now_ms: i64, timeout_ms: i64) -> Vec<InstanceRow> {
    let series = RingView::new(desc.clone(), "ingester").ownership();
    let blocks = RingView::new(desc.clone(), "store-gateway").ownership();
    let share = |owned: &[(String, f64)], id: &str| {
        owned
            .iter()
            .find(|(owner, _)| owner == id)
            .map_or(0.0, |(_, o)| o * 100.0)
    };
    desc.instances
        .values()
        .map(|i| InstanceRow {
            id: i.id.clone(),
            roles: i.roles.clone(),
            zone: i.zone.clone(),
            state: i.state.as_str(),
            health: if i.is_healthy(now_ms, timeout_ms) {
                "healthy"
            } else {
                "unhealthy"
            },
            address: i.grpc_addr.clone(),
            http_address: i.http_addr.clone(),
            heartbeat_age_ms: now_ms - i.heartbeat_ms,
            heartbeat_ms: i.heartbeat_ms,
            tokens: i.tokens.len(),
            ownership_percent: share(&series, &i.id),
            block_ownership_percent: share(&blocks, &i.id),
            owned_blocks: None,
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page; `leader` names the Raft leader when known.
pub fn html(rows: &[InstanceRow], leader: Option<&str>) -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Strata ring</title>\
         <style>body{font-family:sans-serif}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px}.unhealthy{background:#fdd}</style></head>\
         <body><h1>Ring</h1>",
    );
    if let Some(l) = leader {
        out.push_str(&format!("<p>Raft leader: {}</p>", escape(l)));
    }
    out.push_str(
        "<table><tr><th>Instance</th><th>Roles</th><th>Zone</th><th>State</th><th>Health</th>\
         <th>Address</th><th>Last heartbeat</th><th>Tokens</th><th>Series ownership</th>\
         <th>Block ownership</th><th>Blocks</th><th></th></tr>",
    );
    for r in rows {
        out.push_str(&format!(
            "<tr class=\"{health}\"><td>{id}</td><td>{roles}</td><td>{zone}</td><td>{state}</td>\
             <td>{health}</td><td>{addr}</td><td>{age:.1}s ago</td><td>{tokens}</td><td>{own:.1}%</td><td>{blocks:.1}%</td><td>{count}</td>\
             <td><form method=\"POST\" action=\"\"><input type=\"hidden\" name=\"forget\" value=\"{id}\">\
             <button type=\"submit\">Forget</button></form></td></tr>",
            health = r.health,
            id = escape(&r.id),
            roles = escape(&r.roles.join(",")),
            zone = escape(&r.zone),
            state = r.state,
            addr = escape(&r.address),
            age = r.heartbeat_age_ms as f64 / 1000.0,
            tokens = r.tokens,
            own = r.ownership_percent,
            blocks = r.block_ownership_percent,
            count = r.owned_blocks.map(|n| n.to_string()).unwrap_or_default(),
        ));
    }
    out.push_str("</table></body></html>");
    out
}
