// Strata observed by Strata: Grafana dashboards, alerting rules and SLO
// recording rules for a Strata installation, in the monitoring-mixin shape
// (prometheusAlerts, prometheusRules, grafanaDashboards). build.sh renders
// it into helm/strata/mixin/, which the Helm chart installs.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'slo.libsonnet') +
(import 'dashboards.libsonnet')
