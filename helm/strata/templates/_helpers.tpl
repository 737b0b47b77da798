{{/* Names */}}
{{- define "strata.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "strata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of one component: (dict "ctx" $ "component" "ingester") */}}
{{- define "strata.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "strata.componentLabels" -}}
{{ include "strata.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The headless Service of a StatefulSet component. */}}
{{- define "strata.headless" -}}
{{- printf "%s-%s-headless" (include "strata.fullname" .ctx) .component -}}
{{- end -}}

{{/* Stable gRPC address of pod `index` of StatefulSet `name` behind `headless`. */}}
{{- define "strata.podAddr" -}}
{{- printf "%s-%d.%s.%s.svc.cluster.local:%d" .name (int .index) .headless .ctx.Release.Namespace (int .ctx.Values.ports.grpc) -}}
{{- end -}}

{{/*
Where the ring's Raft group is found: the first compactor pod by name (it
starts the group on the first install) and every compactor pod through the
headless Service's DNS records. Compactors are voters by flag, so scaling
their StatefulSet changes no configuration: new pods join the group.
*/}}
{{- define "strata.raftPeers" -}}
{{- $name := printf "%s-compactor" (include "strata.fullname" .) -}}
{{- $headless := include "strata.headless" (dict "ctx" . "component" "compactor") -}}
{{- $first := include "strata.podAddr" (dict "ctx" . "name" $name "headless" $headless "index" 0) -}}
{{- $all := printf "dns+%s.%s.svc.cluster.local:%d" $headless .Release.Namespace (int .Values.ports.grpc) -}}
{{- toJson (list $first $all) -}}
{{- end -}}

{{/* Strata's configuration file (its own YAML layout), structuredConfig merged last. */}}
{{- define "strata.config" -}}
{{- $distributed := eq .Values.deploymentMode "distributed" -}}
{{- $cfg := dict
  "multitenancy_enabled" .Values.multitenancyEnabled
  "server" (dict "http_listen_port" (int .Values.ports.http) "grpc_listen_port" (int .Values.ports.grpc))
  "blocks_storage" (dict
    "backend" .Values.blocksStorage.backend
    "filesystem" (dict "dir" "/data/blocks")
    "s3" (dict
      "endpoint" (ternary (printf "%s-minio:9000" (include "strata.fullname" .)) .Values.blocksStorage.s3.endpoint .Values.minio.enabled)
      "bucket_name" .Values.blocksStorage.s3.bucketName
      "region" .Values.blocksStorage.s3.region
      "insecure" (or .Values.blocksStorage.s3.insecure .Values.minio.enabled))
    "gcs" (dict "bucket_name" .Values.blocksStorage.gcs.bucketName)
    "azure" (dict
      "account_name" .Values.blocksStorage.azure.accountName
      "container_name" .Values.blocksStorage.azure.containerName
      "endpoint_suffix" .Values.blocksStorage.azure.endpointSuffix)
    "tsdb" (dict "dir" "/data/tsdb")
    "warm_cache" (dict "dir" "/data/cache"))
  "ring" (dict
    "replication_factor" (int (ternary .Values.ingester.replicationFactor 1 $distributed))
    "tokens_file_path" "/data/tokens"
    "raft" (dict "peers" (ternary (include "strata.raftPeers" . | fromJsonArray) (list) $distributed) "dir" "/data/ring"))
  "frontend" (dict
    "results_cache_bytes" (int64 .Values.queryFrontend.resultsCache.memoryBytes)
    "results_cache_disk_bytes" (int64 .Values.queryFrontend.resultsCache.diskBytes)
    "results_cache_dir" "/data/results-cache")
  "runtime_config" (dict "file" "/etc/strata/runtime/overrides.yaml")
  "limits" .Values.limits
  "ruler" (dict "alertmanager_url" .Values.ruler.alertmanagerUrl)
  "store_gateway" (dict
    "sharding_ring" (dict "replication_factor" (int (ternary .Values.storeGateway.replicationFactor 1 $distributed)))
    "cache" (dict
      "dir" "/data/blocks-cache"
      "memory_bytes" (int64 .Values.storeGateway.cache.memoryBytes)
      "disk_bytes" (int64 (ternary .Values.storeGateway.cache.diskBytes 1073741824 $distributed))))
-}}
{{- if .Values.auth.tokensSecret -}}
{{- $_ := set $cfg "auth" (dict "tokens_file" "/etc/strata/auth/tokens.yaml") -}}
{{- end -}}
{{- if .Values.grpcTls.secret -}}
{{- $_ := set $cfg.server "grpc_tls" (dict "cert_path" "/etc/strata/tls/tls.crt" "key_path" "/etc/strata/tls/tls.key" "client_ca_path" "/etc/strata/tls/ca.crt") -}}
{{- $_ := set $cfg "ingester_client" (dict "tls_enabled" true "tls_cert_path" "/etc/strata/tls/tls.crt" "tls_key_path" "/etc/strata/tls/tls.key" "tls_ca_path" "/etc/strata/tls/ca.crt") -}}
{{- end -}}
{{- toYaml (mergeOverwrite $cfg .Values.structuredConfig) -}}
{{- end -}}

{{/*
The strata container of one role: (dict "ctx" $ "component" "ingester" "target" "ingester"
"instanceAddr" "..." "zone" "" "role" .Values.ingester).
*/}}
{{- define "strata.container" -}}
{{- $v := .ctx.Values -}}
- name: strata
  image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - -target={{ .target }}
    - -config.file=/etc/strata/config/strata.yaml
    - -ring.instance-id=$(POD_NAME)
    - -ring.instance-addr={{ .instanceAddr }}
    {{- if .voter }}
    - -ring.raft.voter=true
    {{- end }}
    {{- if .zone }}
    - -ring.instance-availability-zone={{ .zone }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
    {{- range .role.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with include "strata.storageSecret" .ctx }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  ports:
    - {name: http, containerPort: {{ $v.ports.http }}}
    - {name: grpc, containerPort: {{ $v.ports.grpc }}}
  # /health answers from the process's first second, during a WAL replay
  # too; /ready only once it serves.
  livenessProbe:
    httpGet: {path: /health, port: http}
    periodSeconds: 10
    failureThreshold: 6
  readinessProbe:
    httpGet: {path: /ready, port: http}
    periodSeconds: 5
    failureThreshold: 3
  resources:
    {{- toYaml .role.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/strata/config}
    - {name: runtime, mountPath: /etc/strata/runtime}
    - {name: data, mountPath: /data}
    {{- if $v.auth.tokensSecret }}
    - {name: auth, mountPath: /etc/strata/auth, readOnly: true}
    {{- end }}
    {{- if $v.grpcTls.secret }}
    - {name: tls, mountPath: /etc/strata/tls, readOnly: true}
    {{- end }}
{{- end -}}

{{/* Volumes every role mounts (data is added by the workload). */}}
{{- define "strata.volumes" -}}
- name: config
  configMap: {name: {{ include "strata.fullname" . }}-config}
- name: runtime
  configMap: {name: {{ include "strata.fullname" . }}-runtime}
{{- if .Values.auth.tokensSecret }}
- name: auth
  secret: {secretName: {{ .Values.auth.tokensSecret }}}
{{- end }}
{{- if .Values.grpcTls.secret }}
- name: tls
  secret: {secretName: {{ .Values.grpcTls.secret }}}
{{- end }}
{{- end -}}

{{/* Pod spec parts shared by every role: (dict "ctx" $ "component" "x"). */}}
{{- define "strata.podCommon" -}}
{{- $v := .ctx.Values -}}
serviceAccountName: {{ include "strata.serviceAccountName" .ctx }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "strata.selector" . | nindent 8 }}
{{- end -}}

{{/* Pod template annotations: restart on configuration change. */}}
{{- define "strata.podAnnotations" -}}
checksum/config: {{ include "strata.config" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "strata.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strata.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the object store's credentials, if any. */}}
{{- define "strata.storageSecret" -}}
{{- $b := .Values.blocksStorage -}}
{{- if and .Values.minio.enabled (eq $b.backend "s3") -}}
{{- printf "%s-minio" (include "strata.fullname" .) -}}
{{- else if has $b.backend (list "s3" "gcs" "azure") -}}
{{- (get $b $b.backend).credentialsSecret -}}
{{- end -}}
{{- end -}}

{{/* Refuses values that cannot work, with the reason. */}}
{{- define "strata.validate" -}}
{{- if eq .Values.deploymentMode "distributed" -}}
{{- if eq .Values.blocksStorage.backend "filesystem" -}}
{{- fail "deploymentMode=distributed needs a bucket every role reaches: set blocksStorage.backend=s3, gcs or azure (or minio.enabled=true), or use deploymentMode=monolithic" -}}
{{- end -}}
{{- $ingesters := mul (int .Values.ingester.replicas) (max 1 (len .Values.zones)) -}}
{{- if lt (int $ingesters) (int .Values.ingester.replicationFactor) -}}
{{- fail (printf "ingester.replicationFactor (%d) needs at least as many ingesters; there are %d" (int .Values.ingester.replicationFactor) (int $ingesters)) -}}
{{- end -}}
{{- if and .Values.zones (lt (len .Values.zones) (int .Values.ingester.replicationFactor)) -}}
{{- fail (printf "zone-aware replication puts each copy in its own zone: %d zones cannot hold replicationFactor %d" (len .Values.zones) (int .Values.ingester.replicationFactor)) -}}
{{- end -}}
{{- if and .Values.zones (gt (int .Values.storeGateway.replicas) 0) (lt (len .Values.zones) (int .Values.storeGateway.replicationFactor)) -}}
{{- fail (printf "zone-aware store-gateways put each copy of a block in its own zone: %d zones cannot hold storeGateway.replicationFactor %d" (len .Values.zones) (int .Values.storeGateway.replicationFactor)) -}}
{{- end -}}
{{- if eq (mod (int .Values.compactor.replicas) 2) 0 -}}
{{- fail (printf "compactor.replicas (%d) are the ring's Raft voters: use an odd number (1, 3 or 5)" (int .Values.compactor.replicas)) -}}
{{- end -}}
{{- if and (eq .Values.blocksStorage.backend "s3") (not .Values.minio.enabled) (not .Values.blocksStorage.s3.bucketName) -}}
{{- fail "blocksStorage.s3.bucketName is required" -}}
{{- end -}}
{{- if and (eq .Values.blocksStorage.backend "gcs") (not .Values.blocksStorage.gcs.bucketName) -}}
{{- fail "blocksStorage.gcs.bucketName is required with backend gcs" -}}
{{- end -}}
{{- if and (eq .Values.blocksStorage.backend "azure") (not (and .Values.blocksStorage.azure.accountName .Values.blocksStorage.azure.containerName)) -}}
{{- fail "blocksStorage.azure.accountName and containerName are required with backend azure" -}}
{{- end -}}
{{- end -}}
{{- end -}}
