// Settings of the Strata mixin. Override them by importing mixin.libsonnet
// and adding to _config, e.g. (import 'mixin.libsonnet') + {_config+:: {writeSLO: 0.9995}}.
{
  _config+:: {
    // The label naming one Strata installation (the Kubernetes namespace,
    // which the Prometheus Operator's ServiceMonitor sets) and the one naming
    // one process (the pod).
    installationLabel: 'namespace',
    processLabel: 'pod',

    // Routes of the write path and of the read path, as they appear in
    // strata_request_duration_seconds{route} (with or without the
    // /prometheus prefix).
    writeRoutes: '.*(/api/v1/push|/api/v1/write|/api/prom/push|/otlp/v1/metrics|/otlp/v1/logs|/loki/api/v1/push)',
    readRoutes: '.*(/api/v1/(query|query_range|query_exemplars|series|labels|label/[{]name[}]/values|metadata|status/tsdb|cardinality/label_names|cardinality/label_values|cardinality/active_series)|/loki/api/v1/(query|query_range|series|labels|label/[{]name[}]/values|index/stats|index/volume|index/volume_range|detected_labels|detected_fields|detected_field/[{]name[}]/values|patterns))',

    // Service-level objectives: the share of requests that must succeed
    // (no 5xx) faster than the latency bound (a bucket bound of
    // strata_request_duration_seconds), over 30 days.
    writeSLO: 0.999,
    writeLatencyBound: '1',
    readSLO: 0.995,
    readLatencyBound: '2.5',

    // The label by which the cost-attribution dashboard splits a tenant's
    // samples first (one of the tenants' cost_attribution_labels).
    costAttributionLabel: 'team',

    // Grafana.
    dashboardTags: ['strata'],
    dashboardRefresh: '30s',
    dashboardTimezone: 'utc',
  },
}
