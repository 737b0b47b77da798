//! Finding the ring's voters: `-ring.raft.peers` entries are `host:port`
//! addresses, or `dns+host:port` names whose every A/AAAA record is a peer
//! (the per-pod records of a Kubernetes headless Service), looked up again
//! each time peers are needed so pods that come and go are seen.

/// Prefix of a peer entry resolved through DNS to all its addresses.
pub const DNS_PREFIX: &str = "dns+";

/// The peers named by `entries`: static entries as written, `dns+` entries
/// expanded to `ip:port` of every record (skipped, with a debug log, while
/// the name does not resolve). Order is kept and duplicates dropped.
pub async fn resolve(entries: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry.strip_prefix(DNS_PREFIX) {
            None => push_unique(&mut out, entry.clone()),
            Some(name) => match tokio::net::lookup_host(name).await {
                Ok(addrs) => {
                    let mut found: Vec<String> = addrs.map(|a| a.to_string()).collect();
                    // DNS answers come in any order; a stable order makes
                    // every process try the same peer first.
                    found.sort();
                    for a in found {
                        push_unique(&mut out, a);
                    }
                }
                Err(e) => {
                    tracing::debug!(name, error = %e, "ring peer name does not resolve (yet)")
                }
            },
        }
    }
    out
}

/// Whether `entry` names peers through DNS.
pub fn is_dns(entry: &str) -> bool {
    entry.starts_with(DNS_PREFIX)
}

fn push_unique(out: &mut Vec<String>, addr: String) {
    if !out.contains(&addr) {
        out.push(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_entries_stay_and_dns_entries_expand() {
        let peers = resolve(&[
            "a:1".to_string(),
            "dns+localhost:9095".to_string(),
            "a:1".to_string(),
            "dns+does-not-exist.invalid:1".to_string(),
        ])
        .await;
        assert_eq!(peers[0], "a:1");
        assert!(peers[1..].iter().all(|p| p.ends_with(":9095")), "{peers:?}");
        assert!(
            peers.len() >= 2,
            "localhost resolves to at least one address: {peers:?}"
        );
        assert_eq!(peers.iter().filter(|p| *p == "a:1").count(), 1);
    }
}
