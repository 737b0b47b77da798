//! Sends alerts to Alertmanager's `/api/v2/alerts`, from a bounded queue
//! drained by one background task: a slow or down Alertmanager never blocks
//! rule evaluation; when the queue is full the oldest alerts are dropped and
//! counted. Each batch goes to every configured Alertmanager, retried a few
//! times with backoff.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::Notify;

/// An alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

static SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ruler_notifications_total",
            "Alerts sent to Alertmanager, per outcome (sent, failed).",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});
static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "strata_ruler_notifications_dropped_total",
        "Alerts dropped because the notification queue was full.",
    )
    .expect("valid metric")
});

pub(crate) fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(SENT.clone()))?;
    for outcome in ["sent", "failed"] {
        SENT.with_label_values(&[outcome]);
    }
    r.register(Box::new(DROPPED.clone()))
}

/// The queue and its sender task.
pub struct Notifier {
    urls: Vec<String>,
    capacity: usize,
    queue: Mutex<VecDeque<AmAlert>>,
    wake: Notify,
}

impl Notifier {
    /// Starts the sender for `urls` (Alertmanager base URLs); with none,
    /// alerts are only kept in the ruler's state and APIs.
    pub fn start(urls: Vec<String>, capacity: usize) -> Arc<Self> {
        let n = Arc::new(Self {
            urls,
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        });
        if !n.urls.is_empty() {
            let this = n.clone();
            tokio::spawn(async move { this.run().await });
        }
        n
    }

    /// Queues alerts for sending.
    pub fn send(&self, alerts: Vec<AmAlert>) {
        if alerts.is_empty() || self.urls.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        for a in alerts {
            if q.len() >= self.capacity {
                q.pop_front();
                DROPPED.inc();
            }
            q.push_back(a);
        }
        drop(q);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        loop {
            self.wake.notified().await;
            loop {
                let batch: Vec<AmAlert> = {
                    let mut q = self.queue.lock();
                    let n = q.len().min(64);
                    q.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                for url in &self.urls {
                    let endpoint = format!("{url}/api/v2/alerts");
                    let mut backoff = Duration::from_millis(200);
                    let mut sent = false;
                    for attempt in 0..3 {
                        match client.post(&endpoint).json(&batch).send().await {
                            Ok(r) if r.status().is_success() => {
                                sent = true;
                                break;
                            }
                            Ok(r) => {
                                tracing::warn!(endpoint, status = %r.status(), attempt, "Alertmanager refused alerts")
                            }
                            Err(e) => {
                                tracing::warn!(endpoint, error = %e, attempt, "sending alerts failed")
                            }
                        }
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                    SENT.with_label_values(&[if sent { "sent" } else { "failed" }])
                        .inc_by(batch.len() as u64);
                }
            }
        }
    }
}
