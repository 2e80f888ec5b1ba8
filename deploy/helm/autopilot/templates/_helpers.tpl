{{/* Names and labels of the autopilot chart. */}}

{{- define "autopilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autopilot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service: each worker's stable DNS name is <pod>.<this>.<namespace>.svc. */}}
{{- define "autopilot.headlessName" -}}
{{- printf "%s-headless" (include "autopilot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autopilot.secretName" -}}
{{- default (include "autopilot.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "autopilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "autopilot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "autopilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autopilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "autopilot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "autopilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The secret settings (pydantic SecretStr in autopilot/settings.py) and REDIS_URL: they are
read from the Secret by secretKeyRef and refused in `settings`/`env`.
*/}}
{{- define "autopilot.secretEnvNames" -}}
AUTOPILOT_KAFKA_SSL_KEY_PASSWORD AUTOPILOT_KAFKA_SASL_PASSWORD AUTOPILOT_API_KEYS AUTOPILOT_GITHUB_WEBHOOK_SECRET SLACK_WEBHOOK_URL SLACK_BOT_TOKEN SLACK_SIGNING_SECRET AUTOPILOT_WEB_SSL_KEY_PASSWORD REDIS_URL
{{- end }}

{{/*
The plain (non-secret) environment of a worker as a dict: the first-class values, then
`settings` (AUTOPILOT_<KEY>), then `env` (verbatim), later ones winning.
*/}}
{{- define "autopilot.plainEnv" -}}
{{- $v := .Values }}
{{- $env := dict
  "AUTOPILOT_APP_ID" $v.appId
  "AUTOPILOT_BROKER" $v.kafka.broker
  "AUTOPILOT_PARTITIONS" (toString $v.partitions)
  "AUTOPILOT_REPLICATION_FACTOR" (toString $v.replicationFactor)
  "AUTOPILOT_STANDBY_REPLICAS" (toString $v.standbyReplicas)
  "AUTOPILOT_REBALANCE_TIMEOUT_S" (toString $v.consumerGroup.rebalanceTimeoutS)
  "AUTOPILOT_SESSION_TIMEOUT_S" (toString $v.consumerGroup.sessionTimeoutS)
  "AUTOPILOT_HEARTBEAT_INTERVAL_S" (toString $v.consumerGroup.heartbeatIntervalS)
  "AUTOPILOT_COMMIT_INTERVAL_S" (toString $v.consumerGroup.commitIntervalS)
  "AUTOPILOT_KAFKA_SECURITY_PROTOCOL" $v.kafka.securityProtocol
  "AUTOPILOT_KAFKA_SASL_MECHANISM" $v.kafka.sasl.mechanism
  "AUTOPILOT_ROCKSDB_MEMORY_MB" (toString $v.rocksdbMemoryMb)
  "AUTOPILOT_ANALYSIS_CONCURRENCY" (toString $v.ollama.analysisConcurrency)
  "OLLAMA_URL" $v.ollama.url
  "OLLAMA_MODEL" $v.ollama.model
  "OLLAMA_TIMEOUT_S" (toString $v.ollama.timeoutS)
}}
{{- with $v.topicPrefix }}{{ $_ := set $env "AUTOPILOT_TOPIC_PREFIX" . }}{{ end }}
{{- with $v.kafka.sasl.username }}{{ $_ := set $env "AUTOPILOT_KAFKA_SASL_USERNAME" . }}{{ end }}
{{- with $v.slack.channel }}{{ $_ := set $env "SLACK_CHANNEL" . }}{{ end }}
{{- with $v.redis.url }}{{ $_ := set $env "REDIS_URL" . }}{{ end }}
{{- if $v.kafka.tls.secretName }}
{{- $_ := set $env "AUTOPILOT_KAFKA_SSL_CAFILE" "/etc/autopilot/kafka-tls/ca.crt" }}
{{- if $v.kafka.tls.clientCertificate }}
{{- $_ := set $env "AUTOPILOT_KAFKA_SSL_CERTFILE" "/etc/autopilot/kafka-tls/tls.crt" }}
{{- $_ := set $env "AUTOPILOT_KAFKA_SSL_KEYFILE" "/etc/autopilot/kafka-tls/tls.key" }}
{{- end }}
{{- end }}
{{- $secretNames := splitList " " (include "autopilot.secretEnvNames" .) }}
{{- $reserved := list "AUTOPILOT_WEB_HOST" "AUTOPILOT_WEB_PORT" "AUTOPILOT_DATADIR" }}
{{- range $key, $value := $v.settings }}
{{- $name := printf "AUTOPILOT_%s" (upper $key | trimPrefix "AUTOPILOT_") }}
{{- if has $name $secretNames }}{{ fail (printf "settings.%s: %s is a secret; put it in secrets.values or secrets.existingSecret" $key $name) }}{{ end }}
{{- if has $name $reserved }}{{ fail (printf "settings.%s: %s is set by the chart (web.port, the pod's DNS name, the data volume)" $key $name) }}{{ end }}
{{- $_ := set $env $name (toString $value) }}
{{- end }}
{{- range $name, $value := $v.env }}
{{- if has $name $secretNames }}{{ fail (printf "env.%s is a secret; put it in secrets.values or secrets.existingSecret" $name) }}{{ end }}
{{- if has $name $reserved }}{{ fail (printf "env.%s is set by the chart (web.port, the pod's DNS name, the data volume)" $name) }}{{ end }}
{{- $_ := set $env $name (toString $value) }}
{{- end }}
{{- toYaml $env }}
{{- end }}
