// Service-level objectives of Strata's write and read paths, with
// multi-window, multi-burn-rate alerts (Google's SRE workbook, chapter
// "Alerting on SLOs"): a request is good when it is answered without a
// server error within the path's latency bound; 4xx answers are the
// client's and count as good.
{
  local config = $._config,
  local inst = config.installationLabel,
  local windows = ['5m', '30m', '1h', '2h', '6h', '1d', '3d'],
  local paths = [
    { name: 'write', routes: config.writeRoutes, slo: config.writeSLO, bound: config.writeLatencyBound },
    { name: 'read', routes: config.readRoutes, slo: config.readSLO, bound: config.readLatencyBound },
  ],
  local record(path, window) = '%s:strata_%s_slo_errors:ratio_rate%s' % [inst, path.name, window],
  // (long window, short window, burn rate, severity) as the workbook's table.
  local burns = [
    ['1h', '5m', 14.4, 'critical'],
    ['6h', '30m', 6, 'critical'],
    ['1d', '2h', 3, 'warning'],
    ['3d', '6h', 1, 'warning'],
  ],

  prometheusRules+:: {
    groups+: [
      {
        name: 'strata-slo-%s' % path.name,
        rules: [
          {
            record: record(path, w),
            expr: |||
              1 - (
                sum by (%(i)s) (rate(strata_request_duration_seconds_bucket{route=~"%(r)s", status_code!~"5..", le=~"%(b)s(\\.0)?"}[%(w)s]))
              /
                sum by (%(i)s) (rate(strata_request_duration_seconds_count{route=~"%(r)s"}[%(w)s]))
              )
            ||| % { i: inst, r: path.routes, b: path.bound, w: w },
          }
          for w in windows
        ],
      }
      for path in paths
    ],
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'strata-slo-alerts',
        rules: [
          {
            local budget = '%g' % (1 - path.slo),
            local cap(s) = std.asciiUpper(s[0]) + s[1:],
            local sev = [b for b in burns if b[3] == severity],
            alert: 'Strata%sPathErrorBudgetBurn' % cap(path.name),
            expr: std.join('\nor\n', [
              '(%s > (%g * %s) and %s > (%g * %s))' % [record(path, b[0]), b[2], budget, record(path, b[1]), b[2], budget]
              for b in sev
            ]),
            'for': if severity == 'critical' then '2m' else '15m',
            labels: { severity: severity },
            annotations: {
              summary: 'The %s path of {{ $labels.%s }} burns its error budget too fast.' % [path.name, inst],
              description: 'More than the allowed share of %s requests fail (5xx) or take longer than %ss: at this rate the %s%% objective over 30 days is missed (%s).' % [path.name, path.bound, '%g' % (path.slo * 100), if severity == 'critical' then 'within days' else 'within the month'],
              runbook_url: config.runbookBase + '#strata%spatherrorbudgetburn' % path.name,
            },
          }
          for path in paths
          for severity in ['critical', 'warning']
        ],
      },
    ],
  },
}
