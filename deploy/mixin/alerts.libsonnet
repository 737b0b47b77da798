// Strata's alerts about itself. Each alert has a section of the same name
// in docs/runbooks.md (checked by tests/it/mixin.rs), which its
// runbook_url annotation points at.
{
  local config = $._config,
  local inst = config.installationLabel,
  local proc = config.processLabel,
  local runbook(name) = { runbook_url: config.runbookBase + '#' + std.asciiLower(name) },
  local alert(name, expr, severity, summary, description, forDuration=null) = {
    alert: name,
    expr: expr,
    [if forDuration != null then 'for']: forDuration,
    labels: { severity: severity },
    annotations: { summary: summary, description: description } + runbook(name),
  },

  _config+:: {
    // Where docs/runbooks.md is published (set it to your copy's URL).
    runbookBase: 'docs/runbooks.md',
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'strata-ring',
        rules: [
          alert('StrataRingRaftNoLeader', 'strata_ring_raft_has_leader == 0', 'critical',
                'A Raft voter of the ring has known no leader for a minute.',
                '{{ $labels.%s }} sees no leader of the ring\'s Raft group: ring changes (instances joining, leaving, heartbeats) stall while writes and reads go on with the last ring.' % proc,
                '1m'),
          alert('StrataRingRaftLearnerStuck', 'strata_ring_raft_learners > 0', 'warning',
                'A voter has been joining the ring\'s Raft group for 15 minutes.',
                'A learner of the ring\'s Raft group seen by {{ $labels.%s }} has not caught up for 15 minutes.' % proc,
                '15m'),
          alert('StrataRingMembersUnhealthy', 'max by (%s, role) (strata_ring_unhealthy_members) > 0' % inst, 'warning',
                '{{ $value }} {{ $labels.role }} instance(s) stopped heartbeating into the ring.',
                'Instances whose heartbeat is older than -ring.heartbeat-timeout are skipped by writes and reads; unhealthy ingesters reduce the replicas a write can reach.',
                '5m'),
        ],
      },
      {
        name: 'strata-requests',
        rules: [
          alert('StrataRequestErrors',
                '100 * sum by (%(i)s, route) (rate(strata_request_duration_seconds_count{status_code=~"5.."}[5m])) / sum by (%(i)s, route) (rate(strata_request_duration_seconds_count[5m])) > 1' % { i: inst },
                'critical',
                '{{ $value | humanize }}% of requests to {{ $labels.route }} fail with a server error.',
                'More than 1%% of the requests to {{ $labels.route }} in {{ $labels.%s }} were answered with 5xx for 15 minutes.' % inst,
                '15m'),
          alert('StrataRequestPanics', 'increase(strata_http_request_panics_total[10m]) > 0', 'warning',
                'Strata answered requests with 500 after a fault.',
                '{{ $labels.%s }} hit a fault (a caught panic) while serving a request; the process went on.' % proc),
          alert('StrataAuthTokensReloadFailing', 'strata_auth_tokens_last_reload_successful == 0', 'warning',
                'The tokens file has not loaded for 15 minutes.',
                '{{ $labels.%s }} keeps the last good tokens; new or rotated tokens are refused until the file loads.' % proc,
                '15m'),
        ],
      },
      {
        name: 'strata-storage',
        rules: [
          alert('StrataWALCorruption', 'increase(strata_wal_corruptions_total[1h]) > 0', 'warning',
                'An ingester found a corrupt WAL segment at start-up.',
                '{{ $labels.%s }} copied a WAL segment with a corrupt record to <wal dir>/corrupt/ and replayed what came before it.' % proc),
          alert('StrataBlockUploadsFailing', 'increase(strata_ingester_block_upload_failures_total[30m]) > 0', 'critical',
                'An ingester has been failing to upload blocks for 30 minutes.',
                '{{ $labels.%s }} cannot write blocks to the object store; its WAL and head keep the data and grow until uploads succeed.' % proc,
                '30m'),
          alert('StrataObjectStoreErrors',
                '100 * sum by (%(i)s, bucket, operation) (rate(strata_objstore_operation_failures_total[5m])) / sum by (%(i)s, bucket, operation) (rate(strata_objstore_operations_total[5m])) > 5' % { i: inst },
                'warning',
                '{{ $value | humanize }}% of {{ $labels.operation }} calls to the {{ $labels.bucket }} bucket fail.',
                'Object-store {{ $labels.operation }} calls to the {{ $labels.bucket }} bucket of {{ $labels.%s }} have failed more than 5%% of the time for 15 minutes.' % inst,
                '15m'),
          alert('StrataCompactorHasNotSucceeded',
                // Only compactors run passes (every process exports the gauge); one
                // that never succeeded counts from its start.
                '((time() - strata_compactor_last_successful_run_timestamp_seconds > 86400 and strata_compactor_last_successful_run_timestamp_seconds > 0) or (strata_compactor_last_successful_run_timestamp_seconds == 0 and on (%(i)s, %(p)s) (time() - process_start_time_seconds > 86400))) and on (%(i)s, %(p)s) strata_build_info{target=~"(.*,)?(all|compactor)(,.*)?"}' % { i: inst, p: proc },
                'critical',
                'The compactor has not finished a pass without error for 24 hours.',
                '{{ $labels.%s }} has not completed compaction, retention and tier moves for a day: blocks pile up, retention is not applied.' % proc),
        ],
      },
      {
        name: 'strata-ruler',
        rules: [
          alert('StrataRulerEvaluationsFailing',
                '100 * sum by (%(i)s, tenant) (rate(strata_ruler_evaluations_total{outcome="failed"}[5m])) / sum by (%(i)s, tenant) (rate(strata_ruler_evaluations_total[5m])) > 1' % { i: inst },
                'warning',
                '{{ $value | humanize }}% of rule-group evaluations of tenant {{ $labels.tenant }} fail.',
                'Rule groups of tenant {{ $labels.tenant }} fail to evaluate: recorded series have gaps and alerts may not fire.',
                '15m'),
          alert('StrataRulerMissedEvaluations',
                'sum by (%(i)s, tenant) (increase(strata_ruler_evaluations_total{outcome="missed"}[10m])) > 0' % { i: inst },
                'warning',
                'The ruler skipped evaluations of tenant {{ $labels.tenant }}.',
                'Evaluations of tenant {{ $labels.tenant }} took longer than their interval and the next was skipped.',
                '15m'),
          alert('StrataRulerNotificationsDropped', 'increase(strata_ruler_notifications_dropped_total[10m]) > 0', 'warning',
                'The ruler dropped alert notifications.',
                '{{ $labels.%s }} dropped notifications to Alertmanager (queue full or Alertmanager unreachable).' % proc,
                '5m'),
        ],
      },
      {
        name: 'strata-process',
        rules: [
          alert('StrataRuntimeConfigReloadFailing', 'strata_runtime_config_last_reload_successful == 0', 'warning',
                'The per-tenant overrides file has not loaded for 15 minutes.',
                '{{ $labels.%s }} keeps the last good overrides.' % proc,
                '15m'),
          alert('StrataProcessRestarting',
                'changes(process_start_time_seconds[30m]) * on (%(i)s, %(p)s) group_left (target) strata_build_info > 2' % { i: inst, p: proc },
                'warning',
                '{{ $labels.%s }} ({{ $labels.target }}) restarted {{ $value }} times in 30 minutes.' % proc,
                'A Strata process keeps restarting: a crash, an out-of-memory kill or a failing start-up.'),
        ],
      },
    ],
  },
}
