//! This process's ingesters, called by distributors and queriers in the
//! same process without encoding.

use std::sync::Arc;

use strata_ingester_client::{
    ClientError, LocalIngesters, LogPushOutcome, PushLimits, PushOutcome,
};
use strata_model::head_stats::HeadStats;
use strata_model::logs::{Direction, EntrySize, LineFilter, LogEntry, LogStream};
use strata_model::metadata::MetricMetadata;
use strata_model::{Exemplar, Labels, Matcher, SeriesBatch, SeriesSamples};

use crate::logs::LogIngester;
use crate::{Ingester, IngesterError};

/// The metrics and log ingesters of this process.
pub struct Local {
    metrics: Arc<Ingester>,
    logs: Arc<LogIngester>,
}

impl Local {
    /// Both ingesters, for an [`IngesterPool`](strata_ingester_client::IngesterPool).
    pub fn shared(metrics: Arc<Ingester>, logs: Arc<LogIngester>) -> Arc<dyn LocalIngesters> {
        Arc::new(Self { metrics, logs })
    }
}

fn client_error(e: IngesterError) -> ClientError {
    match e {
        IngesterError::ShuttingDown => ClientError::local_unavailable(e),
        other => ClientError::local_failed(other),
    }
}

impl LocalIngesters for Local {
    fn push(
        &self,
        tenant: &str,
        series: &SeriesBatch,
        limits: PushLimits,
    ) -> Result<PushOutcome, ClientError> {
        self.metrics
            .push_batch(tenant, series, limits)
            .map_err(client_error)
    }

    fn push_metadata(
        &self,
        tenant: &str,
        metadata: &[MetricMetadata],
        limits: PushLimits,
    ) -> Result<(), ClientError> {
        self.metrics
            .push_metadata(tenant, metadata, limits)
            .map_err(client_error)
    }

    fn metric_metadata(&self, tenant: &str, metric: Option<&str>) -> Vec<MetricMetadata> {
        self.metrics.metadata(tenant, metric)
    }

    fn head_stats(&self, tenant: &str, limit: usize) -> HeadStats {
        self.metrics.head_stats(tenant, limit)
    }

    fn push_exemplars(
        &self,
        tenant: &str,
        exemplars: &[(Labels, Exemplar)],
        limits: PushLimits,
    ) -> Result<(), ClientError> {
        self.metrics
            .push_exemplars(tenant, exemplars, limits)
            .map_err(client_error)
    }

    fn exemplars(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        self.metrics.exemplars(tenant, alternatives, start, end)
    }

    fn push_logs(
        &self,
        tenant: &str,
        streams: Vec<(Labels, Vec<LogEntry>)>,
        max_streams: usize,
    ) -> Result<LogPushOutcome, ClientError> {
        self.logs
            .push(tenant, streams, max_streams)
            .map_err(client_error)
    }

    fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Vec<SeriesSamples> {
        self.metrics.select(tenant, matchers, min_t, max_t)
    }

    fn series(&self, tenant: &str, matchers: &[Matcher], min_t: i64, max_t: i64) -> Vec<Labels> {
        self.metrics.series(tenant, matchers, min_t, max_t)
    }

    fn select_logs(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        filters: &[LineFilter],
        start_ns: i64,
        end_ns: i64,
        limit: Option<(usize, Direction)>,
    ) -> Vec<LogStream> {
        self.logs
            .select(tenant, matchers, filters, start_ns, end_ns, limit)
    }

    fn select_log_sizes(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<(Labels, Vec<EntrySize>)> {
        self.logs.select_sizes(tenant, matchers, start_ns, end_ns)
    }

    fn log_streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<Labels> {
        self.logs.streams(tenant, matchers, start_ns, end_ns)
    }
}
