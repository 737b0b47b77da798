// Strata's Grafana dashboards: one per part of the system an operator
// watches (writes, reads, ingesters, object store and tiers, compactor,
// ruler, ring, tenants and cost, resources). Every query reads metrics a
// running Strata cluster exports (checked by tests/it/mixin.rs).
local g = import 'lib/grafana.libsonnet';

{
  local config = $._config,
  local inst = config.installationLabel,
  local proc = config.processLabel,
  // Series of the chosen installation.
  local S = inst + '=~"$namespace"',
  local rate(metric, by, extra='') =
    'sum by (%s) (rate(%s{%s%s}[$__rate_interval]))' % [by, metric, S, extra],
  local quantile(q, metric, by, extra='') =
    'histogram_quantile(%s, sum by (%s, le) (rate(%s{%s%s}[$__rate_interval])))' % [q, by, metric, S, extra],
  // A per-process series joined with the roles the process runs.
  local byRole(expr) =
    'sum by (target) (%s * on (%s, %s) group_left (target) strata_build_info{%s})' % [expr, inst, proc, S],

  local installation = g.queryVariable('namespace', 'Installation', 'label_values(strata_build_info, %s)' % inst),
  local common = [g.datasourceVariable, installation],
  local dashboard(uid, title, description, items, extraVariables=[]) =
    g.dashboard(uid, title, description, items, common + extraVariables, config),

  local writes = ', route=~"%s"' % config.writeRoutes,
  local reads = ', route=~"%s"' % config.readRoutes,

  grafanaDashboards+:: {
    'strata-writes.json': dashboard('strata-writes', 'Strata / Writes', 'The write path: remote-write, OTLP and Loki pushes through distributors to ingesters.', [
      g.row('Requests'),
      g.timeseries('Write requests', [g.target(rate('strata_request_duration_seconds_count', 'route, status_code', writes), '{{route}} {{status_code}}')], 'reqps'),
      g.timeseries('Write latency p99', [g.target(quantile('0.99', 'strata_request_duration_seconds_bucket', 'route', writes), '{{route}}')], 's'),
      g.timeseries('Write latency p50', [g.target(quantile('0.5', 'strata_request_duration_seconds_bucket', 'route', writes), '{{route}}')], 's'),
      g.row('Samples, logs and what was refused'),
      g.timeseries('Samples received', [g.target(rate('strata_distributor_received_samples_total', 'user'), '{{user}}')], 'short', 'Samples per second in accepted and refused requests, per tenant.', true),
      g.timeseries('Log bytes received', [g.target(rate('strata_distributor_received_log_bytes_total', 'user'), '{{user}}')], 'Bps', '', true),
      g.timeseries('In-flight push requests', [g.target('sum by (%s) (strata_distributor_inflight_push_requests{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Discarded samples', [g.target(rate('strata_discarded_samples_total', 'reason'), '{{reason}}')], 'short', 'Samples refused per second, by reason (rate_limited, per_user_series_limit, out_of_bounds, ...).', true),
      g.timeseries('Discarded log bytes', [g.target(rate('strata_discarded_log_bytes_total', 'reason'), '{{reason}}')], 'Bps', '', true),
      g.timeseries('Discarded exemplars and metadata', [
        g.target(rate('strata_discarded_exemplars_total', 'reason'), 'exemplars {{reason}}'),
        g.target(rate('strata_discarded_metadata_total', 'reason'), 'metadata {{reason}}'),
      ]),
      g.row('Ingesters'),
      g.timeseries('Samples appended', [g.target(rate('strata_ingester_samples_appended_total', proc), '{{%s}}' % proc)], 'short', 'Samples written to WAL and head per second, per ingester (each replica counts).', true),
      g.timeseries('Samples rejected by ingesters', [g.target(rate('strata_ingester_samples_rejected_total', 'reason'), '{{reason}}')]),
      g.timeseries('WAL written', [g.target(rate('strata_ingester_wal_written_bytes_total', proc + ', wal'), '{{%s}} {{wal}}' % proc)], 'Bps'),
    ]),

    'strata-reads.json': dashboard('strata-reads', 'Strata / Reads', 'The read path: Prometheus and Loki query APIs, query-frontends, queriers, store-gateways and the block caches.', [
      g.row('Requests'),
      g.timeseries('Read requests', [g.target(rate('strata_request_duration_seconds_count', 'route, status_code', reads), '{{route}} {{status_code}}')], 'reqps'),
      g.timeseries('Read latency p99', [g.target(quantile('0.99', 'strata_request_duration_seconds_bucket', 'route', reads), '{{route}}')], 's'),
      g.timeseries('Read latency p50', [g.target(quantile('0.5', 'strata_request_duration_seconds_bucket', 'route', reads), '{{route}}')], 's'),
      g.row('Queriers'),
      g.timeseries('Query evaluations', [g.target(rate('strata_querier_request_duration_seconds_count', 'kind, status'), '{{kind}} {{status}}')], 'reqps'),
      g.timeseries('Query evaluation p99', [g.target(quantile('0.99', 'strata_querier_request_duration_seconds_bucket', 'kind'), '{{kind}}')], 's'),
      g.timeseries('In-flight queries', [g.target('sum by (%s) (strata_querier_inflight_queries{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Requests refused before evaluation', [g.target(rate('strata_rejected_requests_total', 'reason'), '{{reason}}')], 'reqps', 'Requests refused by admission control (queue full, too many concurrent queries), by reason.'),
      g.timeseries('Warm-tier cache hit ratio', [g.target('sum(rate(strata_cache_requests_total{%s, result="hit"}[$__rate_interval])) / sum(rate(strata_cache_requests_total{%s}[$__rate_interval]))' % [S, S], 'hit ratio')], 'percentunit'),
      g.timeseries('Authentication failures', [g.target(rate('strata_auth_failures_total', 'reason'), '{{reason}}')], 'reqps'),
      g.row('Query-frontends and store-gateways'),
      g.timeseries('Query-frontend queue length', [g.target('sum by (%s) (strata_query_frontend_queue_length{%s})' % [proc, S], '{{%s}}' % proc)], 'short', 'Requests waiting for a querier in each query-frontend, all tenants.'),
      g.timeseries('Queriers connected to query-frontends', [g.target('sum by (%s) (strata_query_frontend_connected_queriers{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Range-query parts by source', [g.target(rate('strata_query_frontend_split_parts_total', 'source'), '{{source}}')], 'short', 'Parts of split range queries answered from the results cache or by queriers.'),
      g.timeseries('Requests retried on another querier', [g.target(rate('strata_query_frontend_retries_total', 'reason'), '{{reason}}')], 'reqps'),
      g.timeseries('Blocks owned by store-gateways', [g.target('sum by (%s, signal) (strata_storegateway_owned_blocks{%s})' % [proc, S], '{{%s}} {{signal}}' % proc)]),
      g.timeseries('Block reads through store-gateways', [g.target(rate('strata_querier_storegateway_block_reads_total', 'outcome'), '{{outcome}}')], 'short', 'Blocks queriers read through store-gateways: ok, retried on another owner, failed with no owner left.', true),
    ]),

    'strata-ingesters.json': dashboard('strata-ingesters', 'Strata / Ingesters', 'Heads, WALs and block uploads of the ingesters.', [
      g.row('Heads'),
      g.timeseries('Series in heads', [g.target('sum by (%s) (strata_ingester_head_series{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Log streams in heads', [g.target('sum by (%s) (strata_ingester_log_streams{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Log entries appended', [g.target(rate('strata_ingester_log_entries_appended_total', proc), '{{%s}}' % proc)], 'short', '', true),
      g.timeseries('Log entries rejected', [g.target(rate('strata_ingester_log_entries_rejected_total', 'reason'), '{{reason}}')]),
      g.timeseries('Exemplars and metadata rejected', [
        g.target(rate('strata_ingester_exemplars_rejected_total', 'reason'), 'exemplars {{reason}}'),
        g.target(rate('strata_ingester_metadata_rejected_total', 'reason'), 'metadata {{reason}}'),
      ]),
      g.row('WAL'),
      g.timeseries('WAL size', [g.target('sum by (%s, wal) (strata_ingester_wal_size_bytes{%s})' % [proc, S], '{{%s}} {{wal}}' % proc)], 'bytes'),
      g.timeseries('WAL replay progress', [g.target('max by (%s, wal) (strata_ingester_wal_replay_progress_ratio{%s})' % [proc, S], '{{%s}} {{wal}}' % proc)], 'percentunit', 'Share of the WAL replayed by the last start-up (1 once ready).'),
      g.timeseries('WAL corruptions', [g.target('sum by (%s, wal) (increase(strata_wal_corruptions_total{%s}[$__rate_interval]))' % [proc, S], '{{%s}} {{wal}}' % proc)]),
      g.row('Blocks'),
      g.timeseries('Blocks uploaded', [
        g.target(rate('strata_ingester_blocks_uploaded_total', proc), 'metrics {{%s}}' % proc),
        g.target(rate('strata_ingester_log_blocks_uploaded_total', proc), 'logs {{%s}}' % proc),
      ]),
      g.timeseries('Block bytes uploaded', [g.target(rate('strata_ingester_block_uploaded_bytes_total', proc), '{{%s}}' % proc)], 'Bps'),
      g.timeseries('Block upload failures', [g.target(rate('strata_ingester_block_upload_failures_total', proc), '{{%s}}' % proc)]),
    ]),

    'strata-object-store.json': dashboard('strata-object-store', 'Strata / Object store and tiers', 'Calls to the hot and warm buckets, what the buckets hold, and the warm-tier cache.', [
      g.row('Operations'),
      g.timeseries('Operations', [g.target(rate('strata_objstore_operations_total', 'bucket, operation'), '{{bucket}} {{operation}}')], 'reqps'),
      g.timeseries('Failed operations', [g.target(rate('strata_objstore_operation_failures_total', 'bucket, operation'), '{{bucket}} {{operation}}')], 'reqps'),
      g.timeseries('Operation latency p99', [g.target(quantile('0.99', 'strata_objstore_operation_duration_seconds_bucket', 'bucket, operation'), '{{bucket}} {{operation}}')], 's'),
      g.timeseries('Bytes transferred', [g.target(rate('strata_objstore_transferred_bytes_total', 'bucket, direction'), '{{bucket}} {{direction}}')], 'Bps'),
      g.row('Buckets and tiers'),
      g.timeseries('Blocks in the bucket', [g.target('max by (tier, signal) (strata_bucket_blocks{%s})' % S, '{{tier}} {{signal}}')]),
      g.timeseries('Bytes in the bucket', [g.target('max by (tier, signal) (strata_bucket_bytes{%s})' % S, '{{tier}} {{signal}}')], 'bytes'),
      g.timeseries('Warm-tier cache', [g.target(rate('strata_cache_bytes_total', 'cache, result'), '{{cache}} {{result}}')], 'Bps'),
    ]),

    'strata-compactor.json': dashboard('strata-compactor', 'Strata / Compactor', 'Compaction, retention and tier moves.', [
      g.stat('Since the last successful compaction', g.target('time() - max(strata_compactor_last_successful_run_timestamp_seconds{%s})' % S), 's'),
      g.timeseries('Compaction passes', [g.target('sum by (outcome) (increase(strata_compactor_runs_total{%s}[$__rate_interval]))' % S, '{{outcome}}')]),
      g.timeseries('Tenants owned', [g.target('sum by (%s) (strata_compactor_tenants_owned{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Blocks compacted', [g.target(rate('strata_compactor_blocks_compacted_total', 'signal'), '{{signal}}')]),
      g.timeseries('Blocks marked for deletion', [g.target(rate('strata_compactor_blocks_marked_for_deletion_total', 'signal, reason'), '{{signal}} {{reason}}')]),
      g.timeseries('Blocks deleted', [g.target(rate('strata_compactor_blocks_cleaned_total', 'signal'), '{{signal}}')]),
      g.timeseries('Blocks moved to the warm tier', [g.target(rate('strata_compactor_blocks_moved_to_warm_total', 'signal'), '{{signal}}')]),
    ]),

    'strata-ruler.json': dashboard('strata-ruler', 'Strata / Ruler', 'Rule evaluation and notifications to Alertmanager.', [
      g.timeseries('Group evaluations', [g.target(rate('strata_ruler_evaluations_total', 'outcome'), '{{outcome}}')], 'short', 'Rule-group evaluations per second by outcome (success, failed, missed).'),
      g.timeseries('Failed rule evaluations', [g.target(rate('strata_ruler_evaluation_failures_total', 'tenant'), '{{tenant}}')]),
      g.timeseries('Notifications', [g.target(rate('strata_ruler_notifications_total', 'outcome'), '{{outcome}}')]),
      g.timeseries('Notifications dropped', [g.target(rate('strata_ruler_notifications_dropped_total', proc), '{{%s}}' % proc)]),
    ]),

    'strata-ring.json': dashboard('strata-ring', 'Strata / Ring and membership', "The ring's members as each process sees them, and the Raft group that holds it.", [
      g.row('Members'),
      g.timeseries('Members by role and state', [g.target('max by (role, state) (strata_ring_members{%s})' % S, '{{role}} {{state}}')]),
      g.timeseries('Unhealthy members', [g.target('max by (role) (strata_ring_unhealthy_members{%s})' % S, '{{role}}')]),
      g.timeseries('Processes by role and version', [g.target('count by (target, version) (strata_build_info{%s})' % S, '{{target}} {{version}}')]),
      g.row('Raft'),
      g.timeseries('Voters knowing a leader', [g.target('sum(strata_ring_raft_has_leader{%s}) / count(strata_ring_raft_has_leader{%s})' % [S, S], 'share')], 'percentunit'),
      g.timeseries('Leader', [g.target('max by (%s) (strata_ring_raft_is_leader{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Term', [g.target('max by (%s) (strata_ring_raft_term{%s})' % [proc, S], '{{%s}}' % proc)], 'short', 'Each election raises the term: a climbing term means elections keep happening.'),
      g.timeseries('Applied index', [g.target('max by (%s) (strata_ring_raft_applied_index{%s})' % [proc, S], '{{%s}}' % proc)]),
      g.timeseries('Voters and learners', [
        g.target('max(strata_ring_raft_voters{%s})' % S, 'voters'),
        g.target('max(strata_ring_raft_learners{%s})' % S, 'learners'),
      ]),
    ]),

    'strata-tenants.json': dashboard('strata-tenants', 'Strata / Tenants and cost', "Each tenant's usage, what it was refused, and its samples split by cost-attribution label.", [
      g.row('Usage'),
      g.timeseries('Samples received', [g.target(rate('strata_distributor_received_samples_total', 'user', ', user=~"$user"'), '{{user}}')], 'short', '', true),
      g.timeseries('Log bytes received', [g.target(rate('strata_distributor_received_log_bytes_total', 'user', ', user=~"$user"'), '{{user}}')], 'Bps', '', true),
      g.timeseries('Series in ingester heads', [g.target('sum by (user) (strata_ingester_tenant_series{%s, user=~"$user"})' % S, '{{user}}')], 'short', 'Each replica counts: divide by the replication factor for distinct series.'),
      g.timeseries('Log streams in ingester heads', [g.target('sum by (user) (strata_ingester_tenant_log_streams{%s, user=~"$user"})' % S, '{{user}}')], 'short', 'Each replica counts.'),
      g.timeseries('Metadata received', [g.target(rate('strata_distributor_received_metadata_total', 'user', ', user=~"$user"'), '{{user}}')]),
      g.timeseries('Rule-group evaluations', [g.target(rate('strata_ruler_evaluations_total', 'tenant, outcome', ', tenant=~"$user"'), '{{tenant}} {{outcome}}')]),
      g.row('Refused'),
      g.timeseries('Discarded samples', [g.target(rate('strata_discarded_samples_total', 'user, reason', ', user=~"$user"'), '{{user}} {{reason}}')]),
      g.timeseries('Discarded log bytes', [g.target(rate('strata_discarded_log_bytes_total', 'user, reason', ', user=~"$user"'), '{{user}} {{reason}}')], 'Bps'),
      g.timeseries('Discarded exemplars', [g.target(rate('strata_discarded_exemplars_total', 'user, reason', ', user=~"$user"'), '{{user}} {{reason}}')]),
      g.row('Cost attribution'),
      g.timeseries('Samples by cost-attribution label', [g.target(rate('strata_distributor_received_attributed_samples_total', 'user, $attribution_label', ', user=~"$user"'), '{{user}} {{$attribution_label}}')], 'short', "Samples per second per value of the label chosen above (one of the tenants' cost_attribution_labels; __missing__: series without it, __overflow__: past max_cost_attribution_cardinality).", true),
      g.timeseries('Share of samples by cost-attribution label', [g.target('%s / on (user) group_left () %s' % [rate('strata_distributor_received_attributed_samples_total', 'user, $attribution_label', ', user=~"$user"'), rate('strata_distributor_received_attributed_samples_total', 'user', ', user=~"$user"')], '{{user}} {{$attribution_label}}')], 'percentunit'),
    ], [
      g.queryVariable('user', 'Tenant', 'label_values(strata_distributor_received_samples_total{%s}, user)' % S, multi=true, includeAll=true),
      g.textVariable('attribution_label', 'Cost-attribution label', config.costAttributionLabel),
    ]),

    'strata-resources.json': dashboard('strata-resources', 'Strata / Resources', 'CPU, memory, files and restarts of Strata processes, per role and per process.', [
      g.timeseries('CPU by role', [g.target(byRole('rate(process_cpu_seconds_total{%s}[$__rate_interval])' % S), '{{target}}')], 'short', 'Cores used.', true),
      g.timeseries('Memory by role', [g.target(byRole('process_resident_memory_bytes{%s}' % S), '{{target}}')], 'bytes', 'Resident memory.', true),
      g.timeseries('Restarts', [g.target('sum by (%s) (changes(process_start_time_seconds{%s}[1h]))' % [proc, S], '{{%s}}' % proc)], 'short', 'Process starts in the last hour, per process.'),
      g.timeseries('CPU by process', [g.target('sum by (%s) (rate(process_cpu_seconds_total{%s}[$__rate_interval]) * on (%s, %s) group_left () strata_build_info{%s})' % [proc, S, inst, proc, S], '{{%s}}' % proc)]),
      g.timeseries('Memory by process', [g.target('sum by (%s) (process_resident_memory_bytes{%s} * on (%s, %s) group_left () strata_build_info{%s})' % [proc, S, inst, proc, S], '{{%s}}' % proc)], 'bytes'),
      g.timeseries('Open files', [g.target('sum by (%s) (process_open_fds{%s} * on (%s, %s) group_left () strata_build_info{%s})' % [proc, S, inst, proc, S], '{{%s}}' % proc)]),
    ]),
  },
}
