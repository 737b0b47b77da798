//! Process-wide limits, on by default, against a real process: in-flight
//! pushes (count and bytes), concurrent and outstanding queries, live
//! tails per tenant, fetched series, log query length, and the HTTP
//! server's header timeout. Clients are held in place with raw TCP
//! connections that send a request's body slowly, so each limit is hit
//! deterministically rather than by racing.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Strata, encode, now_ms, secs, series};

/// Opens a connection and sends the head of a POST whose body of `len`
/// bytes is not sent yet: the request is admitted and waits in its handler.
async fn hold_request(
    s: &Strata,
    path: &str,
    content_type: &str,
    len: usize,
    tenant: &str,
) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nX-Scope-OrgID: {tenant}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.expect("send head");
    c
}

/// Sends the rest of a held request and reads its status code.
async fn finish_request(mut c: TcpStream, body: &[u8]) -> u16 {
    c.write_all(body).await.expect("send body");
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.expect("read response");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Waits until the process reports `n` of gauge `name`.
async fn wait_gauge(s: &Strata, name: &str, n: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.self_metric(name).await != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never reached {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn inflight_pushes_are_bounded_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(
        dir.path(),
        &[
            "-distributor.instance-limits.max-inflight-push-requests=1",
            "-distributor.instance-limits.max-inflight-push-requests-bytes=5000",
        ],
    )
    .await;
    let now = now_ms();
    let body = encode(vec![series(&[("__name__", "held")], &[(now, 1.0)])]);
    let held = hold_request(
        &s,
        "/api/v1/push",
        "application/x-protobuf",
        body.len(),
        "anonymous",
    )
    .await;
    wait_gauge(&s, "strata_distributor_inflight_push_requests", 1.0).await;
    // A second push while the first is in flight: 503 with Retry-After.
    let r = s
        .client
        .post(s.url("/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .body(encode(vec![series(
            &[("__name__", "second")],
            &[(now, 1.0)],
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("max-inflight-push-requests")
    );
    // Grafana's version probes are not pushes: answered while pushes are full.
    for path in ["/loki/api/v1/status/buildinfo", "/api/v1/status/buildinfo"] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The held push completes and is stored; then pushes are admitted again.
    assert_eq!(finish_request(held, &body).await, 200);
    let (st, text) = s
        .push(vec![series(&[("__name__", "third")], &[(now, 1.0)])], None)
        .await;
    assert_eq!(st, 200, "{text}");
    // One body larger than the in-flight bytes allowed: 503 at once.
    let big: Vec<_> = (0..3000)
        .map(|i| series(&[("__name__", "big"), ("i", &i.to_string())], &[(now, 1.0)]))
        .collect();
    let big = encode(big);
    assert!(big.len() > 5000, "{} bytes", big.len());
    let (st, text) = s.push_raw(big, None).await;
    assert_eq!(st, 503, "{text}");
    assert!(text.contains("max-inflight-push-requests-bytes"), "{text}");
    assert_eq!(s.self_metric("strata_rejected_requests_total").await, 2.0);
    assert_eq!(s.query("held", now).await["result"][0]["value"][1], "1");
}

#[tokio::test]
async fn queries_wait_for_a_slot_and_tenants_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // The querier's own admission, without a query-frontend in front (which
    // would read the held body before a querier sees the request).
    let s = Strata::start(
        dir.path(),
        &[
            "-target=distributor,ingester,querier,compactor,store-gateway",
            "-auth.multitenancy-enabled=true",
            "-querier.max-concurrent=1",
            "-querier.max-outstanding-requests-per-tenant=2",
            "-querier.timeout=2s",
        ],
    )
    .await;
    let form = "application/x-www-form-urlencoded";
    let body = format!("query=vector(1)&time={}", secs(now_ms()));
    // Tenant a holds the only query slot.
    let held = hold_request(&s, "/api/v1/query", form, body.len(), "a").await;
    wait_gauge(&s, "strata_querier_inflight_queries", 1.0).await;
    let query = |tenant: &'static str| {
        let s = &s;
        async move {
            let r = s
                .client
                .get(s.url("/api/v1/query"))
                .query(&[("query", "vector(1)")])
                .header("X-Scope-OrgID", tenant)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    // Tenant b waits for the slot, then times out in the queue: 503.
    let (st, text) = query("b").await;
    assert_eq!(st, 503, "{text}");
    assert!(text.contains("-querier.max-concurrent"), "{text}");
    // Tenant a's second query waits (two outstanding), its third is refused.
    let second = tokio::spawn({
        let client = s.client.clone();
        let url = s.url("/api/v1/query");
        async move {
            client
                .get(url)
                .query(&[("query", "vector(2)")])
                .header("X-Scope-OrgID", "a")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, text) = query("a").await;
    assert_eq!(st, 429, "{text}");
    assert!(text.contains("too many outstanding requests"), "{text}");
    // Releasing the slot lets the waiting query run.
    assert_eq!(finish_request(held, body.as_bytes()).await, 200);
    assert_eq!(second.await.unwrap().unwrap(), 200);
    let (st, _) = query("b").await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn live_tails_fetched_series_and_log_query_length_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(
        dir.path(),
        &[
            "-querier.max-concurrent-tail-requests=1",
            "-querier.max-fetched-series-per-query=5",
        ],
    )
    .await;
    // Live tails: one per tenant here.
    let url = format!(
        "ws://127.0.0.1:{}/loki/api/v1/tail?query={}",
        s.port, "%7Bapp%3D%22a%22%7D"
    );
    let (_first, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("first tail");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("second tail admitted: {:?}", other.map(|_| ())),
    }
    // Fetched series: 10 series, a limit of 5.
    let now = now_ms();
    let many: Vec<_> = (0..10)
        .map(|i| {
            series(
                &[("__name__", "wide"), ("i", &i.to_string())],
                &[(now, 1.0)],
            )
        })
        .collect();
    let (st, text) = s.push(many, None).await;
    assert_eq!(st, 200, "{text}");
    let (st, j) = s
        .get_json(
            "/api/v1/query",
            &[("query", "wide".into()), ("time", secs(now))],
            None,
        )
        .await;
    assert_eq!(st, 422, "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("max_fetched_series_per_query"),
        "{j}"
    );
    let (st, j) = s
        .get_json("/api/v1/series", &[("match[]", "wide".into())], None)
        .await;
    assert_eq!(st, 422, "{j}");
    let (st, j) = s
        .get_json(
            "/api/v1/query",
            &[("query", "wide{i=~\"[0-4]\"}".into()), ("time", secs(now))],
            None,
        )
        .await;
    assert_eq!(st, 200, "{j}");
    // Log queries longer than Loki's 721h default.
    let end = now * 1_000_000;
    let start = end - 800 * 3_600_000_000_000;
    let (st, text) = {
        let r = s
            .client
            .get(s.url("/loki/api/v1/query_range"))
            .query(&[
                ("query", "{app=\"a\"}".to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
            ])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(st, 400, "{text}");
    assert!(
        text.contains("the query time range exceeds the limit"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-server.http-server-idle-timeout=1s"]).await;
    let mut c = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    c.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    // The rest of the head never comes: the server closes the connection.
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await;
    match read {
        Ok(Ok(n)) => assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"),
            "server answered a half request: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(_)) => {} // reset: closed too
        Err(_) => panic!("the connection stayed open past the header timeout"),
    }
    // Ordinary requests are unaffected (on a new connection: the pooled
    // one sat idle past the timeout and was closed too).
    let r = reqwest::Client::new()
        .get(s.url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
