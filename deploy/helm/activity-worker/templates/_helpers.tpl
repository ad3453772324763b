{{/* Names and labels. */}}
{{- define "aw.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aw.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aw.labels" -}}
{{ include "aw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: consumer
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The webhook ingress's pods: a name of their own, so that no selector of the worker's
(StatefulSet, Service, PodDisruptionBudget) ever matches them. */}}
{{- define "aw.webhooksName" -}}
{{- printf "%s-webhooks" (include "aw.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aw.webhooksSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-webhooks" (include "aw.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aw.webhooksLabels" -}}
{{ include "aw.webhooksSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: webhook-ingress
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "aw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aw.secretName" -}}
{{- default (include "aw.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/* Static membership on or off ("auto": on for a StatefulSet). */}}
{{- define "aw.static" -}}
{{- $v := toString .Values.staticMembership -}}
{{- if eq $v "auto" -}}{{- ternary "true" "false" (eq .Values.kind "StatefulSet") -}}
{{- else -}}{{- $v -}}{{- end -}}
{{- end -}}

{{/* The most replicas this release can run: the fixed count, or KEDA's maximum. */}}
{{- define "aw.maxReplicas" -}}
{{- if .Values.keda.enabled -}}
{{- default .Values.kafka.partitions .Values.keda.maxReplicaCount -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The in-container probe of metrics.portPerPod: GET a health path on this pod's port. */}}
{{- define "aw.probeScript" -}}
import os, urllib.request as u; u.urlopen("http://127.0.0.1:%d{{ . }}" % (int(os.environ["AW_METRICS_BASE_PORT"]) + int(os.environ["POD_INDEX"])), timeout=4)
{{- end -}}

{{/* Refuse values that would deploy something unsafe; each message says what to change. */}}
{{- define "aw.validate" -}}
{{- $kinds := list "StatefulSet" "Deployment" -}}
{{- if not (has .Values.kind $kinds) -}}
{{- fail (printf "kind=%q: use StatefulSet or Deployment" .Values.kind) -}}
{{- end -}}
{{- if not (has (toString .Values.staticMembership) (list "auto" "true" "false")) -}}
{{- fail (printf "staticMembership=%v: use auto, true or false" .Values.staticMembership) -}}
{{- end -}}
{{- if and (eq .Values.kind "Deployment") (eq (include "aw.static" .) "true") -}}
{{- fail "staticMembership=true needs kind=StatefulSet: a Deployment's pod names change on every restart, so each restart would add a new static member and leave the old one's partitions unowned for the session timeout" -}}
{{- end -}}
{{- if and (eq .Values.kafka.processingGuarantee "exactly-once") (ne (include "aw.static" .) "true") -}}
{{- fail "kafka.processingGuarantee=exactly-once needs static membership (kind=StatefulSet, staticMembership auto or true): each pod's transactional.id is made from its pod name, so that a restarted pod fences its killed predecessor and ends the transaction it left open at once" -}}
{{- end -}}
{{- $ledgers := list "memory" "sqlite" "postgresql" "redis" -}}
{{- if not (has .Values.ledger.kind $ledgers) -}}
{{- fail (printf "ledger.kind=%q: use one of %s" .Values.ledger.kind (join ", " $ledgers)) -}}
{{- end -}}
{{- $max := int (include "aw.maxReplicas" .) -}}
{{- if and (has .Values.ledger.kind (list "memory" "sqlite")) (gt $max 1) -}}
{{- fail (printf "ledger.kind=%s with up to %d replicas: each pod would have its own ledger and effects could happen twice after a rebalance; use ledger.kind=postgresql (or redis) with a shared ledger URL, or run one replica" .Values.ledger.kind $max) -}}
{{- end -}}
{{- if and (eq .Values.ledger.kind "sqlite") (not (and .Values.persistence.enabled (eq .Values.kind "StatefulSet"))) -}}
{{- fail "ledger.kind=sqlite needs kind=StatefulSet and persistence.enabled=true: in an emptyDir the ledger would vanish with the pod, and effects of redelivered events would happen again" -}}
{{- end -}}
{{- if and (eq .Values.ledger.kind "sqlite") .Values.ledger.url -}}
{{- fail "ledger.url is not used with ledger.kind=sqlite (the file is in the data volume): leave it empty" -}}
{{- end -}}
{{- if and (has .Values.ledger.kind (list "postgresql" "redis")) (not .Values.ledger.url) (not .Values.secret.existingSecret) -}}
{{- fail (printf "ledger.kind=%s needs its URL: set ledger.url, or put WORKER_LEDGER into secret.existingSecret" .Values.ledger.kind) -}}
{{- end -}}
{{- if .Values.ledger.url -}}
{{- $scheme := lower (first (splitList ":" .Values.ledger.url)) -}}
{{- $schemes := dict "postgresql" (list "postgresql" "postgres") "redis" (list "redis" "rediss" "unix") "memory" (list "memory") "sqlite" (list "sqlite") -}}
{{- if not (has $scheme (get $schemes .Values.ledger.kind)) -}}
{{- fail (printf "ledger.url is a %s:// URL but ledger.kind=%s: make them agree" $scheme .Values.ledger.kind) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.secret.existingSecret .Values.secret.data -}}
{{- fail "set either secret.existingSecret or secret.data, not both" -}}
{{- end -}}
{{- if and .Values.secret.existingSecret .Values.ledger.url -}}
{{- fail "ledger.url would go into a Secret the chart creates, but secret.existingSecret is set: put WORKER_LEDGER into that Secret instead" -}}
{{- end -}}
{{- if .Values.webhooks.enabled -}}
{{- if not (or .Values.secret.existingSecret (hasKey .Values.secret.data "WORKER_INGRESS_SECRET")) -}}
{{- fail "webhooks.enabled needs the project's webhook secret key: put WORKER_INGRESS_SECRET into secret.data (or into secret.existingSecret); several keys comma-separated during a rotation" -}}
{{- end -}}
{{- if lt (int .Values.webhooks.replicaCount) 2 -}}
{{- fail "webhooks.replicaCount must be at least 2: a day without the ingress makes Voucherify disable the webhook, so one pod's restart or a node drain must not take it away" -}}
{{- end -}}
{{- end -}}
{{- if empty .Values.kafka.topics -}}
{{- fail "kafka.topics is empty: name at least one topic" -}}
{{- end -}}
{{- range $k, $_ := .Values.config -}}
{{- if not (or (hasPrefix "WORKER_" $k) (hasPrefix "KAFKA_" $k)) -}}
{{- fail (printf "config.%s: keys are WORKER_<FLAG> or KAFKA_<PROPERTY> environment variables" $k) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.kafka.groupProtocol "consumer" -}}
{{- range $k := list "KAFKA_SESSION_TIMEOUT_MS" "KAFKA_HEARTBEAT_INTERVAL_MS" "KAFKA_PARTITION_ASSIGNMENT_STRATEGY" "KAFKA_GROUP_PROTOCOL_TYPE" -}}
{{- if hasKey $.Values.config $k -}}
{{- fail (printf "config.%s cannot be set with kafka.groupProtocol=consumer (the worker would exit 2): under KIP-848 the session timeout, heartbeat interval and assignor are the group's configs on the broker (kafka-configs --entity-type groups --entity-name %s --alter --add-config consumer.session.timeout.ms=...); remove it, or use kafka.groupProtocol=classic" $k $.Values.kafka.group) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.shutdownTimeout) 1 -}}
{{- fail "shutdownTimeout must be at least 1 second" -}}
{{- end -}}
{{- if and .Values.metrics.portPerPod (not (and .Values.hostNetwork (eq .Values.kind "StatefulSet"))) -}}
{{- fail "metrics.portPerPod needs hostNetwork=true and kind=StatefulSet: it numbers the ports by the StatefulSet's pod index so that pods sharing a node's network do not clash" -}}
{{- end -}}
{{- if and .Values.metrics.portPerPod .Values.podMonitor.enabled -}}
{{- fail "metrics.portPerPod has no fixed port for a PodMonitor to scrape: turn podMonitor.enabled off, or metrics.portPerPod off" -}}
{{- end -}}
{{- if .Values.keda.enabled -}}
{{- if lt (int .Values.kafka.partitions) 1 -}}
{{- fail "keda.enabled needs kafka.partitions (the topic's partition count): it caps maxReplicaCount" -}}
{{- end -}}
{{- if gt $max (int .Values.kafka.partitions) -}}
{{- fail (printf "keda.maxReplicaCount=%d is above kafka.partitions=%d: the replicas beyond the partition count would sit idle" $max (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- if lt $max (int .Values.keda.minReplicaCount) -}}
{{- fail "keda.minReplicaCount is above keda.maxReplicaCount" -}}
{{- end -}}
{{- end -}}
{{- end -}}
