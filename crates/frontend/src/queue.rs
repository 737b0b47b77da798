//! The frontend's request queue: one FIFO per tenant, served round-robin
//! across tenants to the queriers' workers that pull from it (Mimir's
//! query-scheduler model), so a tenant with a thousand queued requests
//! delays another tenant's request by at most one request per worker.
//! A tenant's requests are bounded before they get here (the frontend
//! admits at most `max_outstanding_requests_per_tenant` client requests per
//! tenant, each a bounded number of jobs) and, with `max_queriers_per_tenant`, only a
//! fixed subset of the connected queriers (chosen by rendezvous hashing of
//! tenant and querier id: shuffle sharding) takes its requests, so one
//! tenant's expensive queries cannot occupy every querier.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use parking_lot::Mutex;
use strata_proto::frontend::{HttpRequest, HttpResponse};
use tokio::sync::{Notify, oneshot};

/// A queued request and where its answer goes.
pub struct Job {
    /// Whose queue it waits in.
    pub tenant: String,
    /// The request a querier runs.
    pub request: HttpRequest,
    /// When it was first queued.
    pub enqueued: Instant,
    /// The answer, or why there is none.
    pub respond: oneshot::Sender<Result<HttpResponse, String>>,
    /// Queriers that failed it: not given it again while another can take it.
    pub failed_on: Vec<String>,
    /// Times it was queued again after a querier failed it.
    pub attempts: usize,
}

/// Per-tenant fair queue (see the module doc).
pub struct RequestQueue {
    state: Mutex<State>,
    wake: Notify,
    max_queriers_per_tenant: usize,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, VecDeque<Job>>,
    /// Tenants with queued requests, in the order they are served.
    order: VecDeque<String>,
    /// Connected queriers and their worker counts.
    queriers: BTreeMap<String, usize>,
}

impl State {
    /// The connected queriers that may take `tenant`'s requests: `None`
    /// for any querier, else the `limit` with the highest rendezvous scores.
    fn shard(&self, limit: usize, tenant: &str) -> Option<Vec<&str>> {
        if limit == 0 || self.queriers.len() <= limit {
            return None;
        }
        let mut scored: Vec<(u64, &str)> = self
            .queriers
            .keys()
            .map(|q| (score(tenant, q), q.as_str()))
            .collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        Some(scored.into_iter().take(limit).map(|(_, q)| q).collect())
    }
}

fn score(tenant: &str, querier: &str) -> u64 {
    let seed = twox_hash::XxHash3_64::oneshot(querier.as_bytes());
    twox_hash::XxHash3_64::oneshot_with_seed(seed, tenant.as_bytes())
}

impl RequestQueue {
    /// A queue holding at most `max_per_tenant` requests per tenant (0: no
    /// bound), each tenant served by at most `max_queriers_per_tenant`
    /// queriers (0: all).
    pub fn new(max_queriers_per_tenant: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            max_queriers_per_tenant,
        }
    }

    /// Queues `job` at the end of its tenant's queue.
    pub fn enqueue(&self, job: Job) {
        {
            let mut s = self.state.lock();
            // Requests whose callers gave up are dropped.
            if let Some(q) = s.queues.get_mut(&job.tenant) {
                q.retain(|j| !j.respond.is_closed());
            }
            let queued = s.queues.get(&job.tenant).map_or(0, VecDeque::len);
            if queued == 0 {
                s.order.push_back(job.tenant.clone());
            }
            s.queues
                .entry(job.tenant.clone())
                .or_default()
                .push_back(job);
        }
        self.wake.notify_waiters();
    }

    /// Puts a job a querier failed back at the front of its tenant's
    /// queue, and that tenant first in line (whatever the bound: it was
    /// admitted already).
    pub fn requeue(&self, job: Job) {
        {
            let mut s = self.state.lock();
            let tenant = job.tenant.clone();
            s.queues.entry(tenant.clone()).or_default().push_front(job);
            // Next in line: it has waited its turn already.
            s.order.retain(|t| *t != tenant);
            s.order.push_front(tenant);
        }
        self.wake.notify_waiters();
    }

    /// Records a worker of `querier` connecting.
    pub fn connect(&self, querier: &str) {
        *self
            .state
            .lock()
            .queriers
            .entry(querier.to_string())
            .or_default() += 1;
        self.wake.notify_waiters();
    }

    /// Records a worker of `querier` going away.
    pub fn disconnect(&self, querier: &str) {
        let mut s = self.state.lock();
        if let Some(n) = s.queriers.get_mut(querier) {
            *n -= 1;
            if *n == 0 {
                s.queriers.remove(querier);
            }
        }
        drop(s);
        // Jobs only it could take may now go to others.
        self.wake.notify_waiters();
    }

    /// Connected queriers.
    pub fn queriers(&self) -> usize {
        self.state.lock().queriers.len()
    }

    /// Requests queued, all tenants.
    pub fn len(&self) -> usize {
        self.state.lock().queues.values().map(VecDeque::len).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next job `querier` may run without waiting. A job this
    /// querier failed waits for a connected querier that serves its tenant
    /// and has not failed it, while there is one; otherwise it comes back
    /// here. Jobs whose callers gave up are dropped on the way.
    pub fn try_next(&self, querier: &str) -> Option<Job> {
        let mut s = self.state.lock();
        let mut pos = 0;
        while pos < s.order.len() {
            let tenant = s.order[pos].clone();
            // Once per tenant scanned: the queriers it may run on, and those
            // besides this one (where a job this querier failed should go).
            let shard = s.shard(self.max_queriers_per_tenant, &tenant);
            if shard.as_ref().is_some_and(|q| !q.contains(&querier)) {
                pos += 1;
                continue;
            }
            let others: Vec<String> = match &shard {
                Some(q) => q
                    .iter()
                    .filter(|q| **q != querier)
                    .map(|q| q.to_string())
                    .collect(),
                None => s
                    .queriers
                    .keys()
                    .filter(|q| q.as_str() != querier)
                    .cloned()
                    .collect(),
            };
            let Some(queue) = s.queues.get_mut(&tenant) else {
                s.order.remove(pos);
                continue;
            };
            queue.retain(|j| !j.respond.is_closed());
            let mine = queue.iter().position(|j| {
                !j.failed_on.iter().any(|q| q == querier)
                    || others.iter().all(|o| j.failed_on.contains(o))
            });
            let job = mine.and_then(|i| queue.remove(i));
            let drained = queue.is_empty();
            if drained {
                s.queues.remove(&tenant);
                s.order.remove(pos);
            }
            let Some(job) = job else {
                if !drained {
                    pos += 1;
                }
                continue;
            };
            if !drained {
                // Served: to the back of the round.
                s.order.remove(pos);
                s.order.push_back(tenant);
            }
            return Some(job);
        }
        None
    }

    /// Waits for the next job `querier` may run.
    pub async fn next(&self, querier: &str) -> Job {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = self.try_next(querier) {
                return job;
            }
            notified.await;
        }
    }

    /// Fails the jobs queued before `older_than`: with no querier to take
    /// them they would wait forever. Returns how many.
    pub fn drain_expired(&self, older_than: Instant) -> usize {
        let mut expired = Vec::new();
        {
            let mut s = self.state.lock();
            let mut emptied = Vec::new();
            for (tenant, queue) in s.queues.iter_mut() {
                while queue.front().is_some_and(|j| j.enqueued < older_than) {
                    if let Some(j) = queue.pop_front() {
                        expired.push(j);
                    }
                }
                if queue.is_empty() {
                    emptied.push(tenant.clone());
                }
            }
            for t in emptied {
                s.queues.remove(&t);
                s.order.retain(|o| *o != t);
            }
        }
        let n = expired.len();
        for j in expired {
            let _ = j.respond.send(Err(
                "the request waited in the queue past its deadline".into()
            ));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tenant: &str, n: usize) -> (Job, oneshot::Receiver<Result<HttpResponse, String>>) {
        let (tx, rx) = oneshot::channel();
        (
            Job {
                tenant: tenant.into(),
                request: HttpRequest {
                    url: format!("/{n}"),
                    ..HttpRequest::default()
                },
                enqueued: Instant::now(),
                respond: tx,
                failed_on: Vec::new(),
                attempts: 0,
            },
            rx,
        )
    }

    /// A job whose caller waits for as long as the test runs.
    fn waited(tenant: &str, n: usize) -> Job {
        let (j, rx) = job(tenant, n);
        std::mem::forget(rx);
        j
    }

    fn url(j: &Job) -> String {
        format!("{}{}", j.tenant, j.request.url)
    }

    /// Tenants take turns whatever the length of their queues.
    #[test]
    fn tenants_are_served_round_robin() {
        let q = RequestQueue::new(0);
        q.connect("q1");
        for n in 0..5 {
            q.enqueue(waited("a", n));
        }
        q.enqueue(waited("b", 0));
        q.enqueue(waited("b", 1));
        let order: Vec<String> = std::iter::from_fn(|| q.try_next("q1").map(|j| url(&j))).collect();
        assert_eq!(order, ["a/0", "b/0", "a/1", "b/1", "a/2", "a/3", "a/4"]);
        assert!(q.is_empty());
    }

    /// A retried job goes back in front of its tenant's queue.
    #[test]
    fn a_retried_job_goes_first() {
        let q = RequestQueue::new(0);
        q.enqueue(waited("a", 0));
        q.enqueue(waited("a", 1));
        q.enqueue(waited("b", 0));
        let first = q.try_next("q").expect("a job");
        q.requeue(first);
        assert_eq!(q.len(), 3);
        assert_eq!(q.try_next("q").map(|j| url(&j)).as_deref(), Some("a/0"));
    }

    /// With max_queriers_per_tenant, each tenant's requests go to a fixed
    /// subset of the queriers, the same whoever asks.
    #[test]
    fn shuffle_sharding_limits_a_tenants_queriers() {
        let q = RequestQueue::new(2);
        for id in ["q1", "q2", "q3", "q4"] {
            q.connect(id);
        }
        let allowed: Vec<&str> = ["q1", "q2", "q3", "q4"]
            .into_iter()
            .filter(|id| {
                q.enqueue(waited("t", 0));
                let got = q.try_next(id).is_some();
                // Leave the queue empty for the next querier.
                while q.try_next("q1").is_some() || q.try_next("q2").is_some() {}
                while q.try_next("q3").is_some() || q.try_next("q4").is_some() {}
                got
            })
            .collect();
        assert_eq!(allowed.len(), 2, "{allowed:?}");
    }

    /// A job a querier failed goes to another querier when there is one.
    #[test]
    fn a_failed_job_goes_elsewhere() {
        let q = RequestQueue::new(0);
        q.connect("q1");
        q.connect("q2");
        let (mut j, _rx) = job("a", 0);
        j.failed_on.push("q1".into());
        q.enqueue(j);
        assert!(q.try_next("q1").is_none());
        assert!(q.try_next("q2").is_some());
        // Alone, q1 takes it again.
        let (mut j, _rx) = job("a", 1);
        j.failed_on.push("q1".into());
        q.disconnect("q2");
        q.enqueue(j);
        assert!(q.try_next("q1").is_some());
    }

    /// A job every querier that may serve its tenant failed is not stuck:
    /// it comes back to one of them (whose answer then goes to the caller).
    #[test]
    fn a_job_failed_everywhere_is_still_served() {
        let q = RequestQueue::new(0);
        q.connect("q1");
        q.connect("q2");
        let (mut j, _rx) = job("a", 0);
        j.failed_on = vec!["q1".into(), "q2".into()];
        q.enqueue(j);
        assert!(q.try_next("q1").is_some());
        // With one querier per tenant, the other querier never serves it.
        let q = RequestQueue::new(1);
        q.connect("q1");
        q.connect("q2");
        let (mut j, _rx) = job("a", 0);
        let owner = if q.state.lock().shard(1, "a") == Some(vec!["q1"]) {
            "q1"
        } else {
            "q2"
        };
        j.failed_on = vec![owner.into()];
        q.enqueue(j);
        assert!(q.try_next(owner).is_some(), "stuck with its only querier");
    }

    /// Requests whose callers are gone are dropped and free their place.
    #[test]
    fn abandoned_requests_are_dropped() {
        let q = RequestQueue::new(0);
        let (j, rx) = job("a", 0);
        q.enqueue(j);
        drop(rx);
        q.enqueue(waited("a", 1));
        assert_eq!(q.len(), 1, "the abandoned one is still queued");
        assert_eq!(q.try_next("q").map(|j| url(&j)).as_deref(), Some("a/1"));
        assert!(q.is_empty());
    }

    /// A waiting worker wakes when a request arrives.
    #[tokio::test]
    async fn workers_wait_for_requests() {
        let q = std::sync::Arc::new(RequestQueue::new(0));
        q.connect("q1");
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { url(&q.next("q1").await) })
        };
        tokio::task::yield_now().await;
        q.enqueue(waited("a", 7));
        assert_eq!(waiter.await.expect("worker"), "a/7");
    }
}
