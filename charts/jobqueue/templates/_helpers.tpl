{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "jobqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-jobqueue, or the release name when it already contains the chart name. */}}
{{- define "jobqueue.fullname" -}}
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

{{- define "jobqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "jobqueue.labels" -}}
helm.sh/chart: {{ include "jobqueue.chart" . }}
{{ include "jobqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobqueue
{{- end }}

{{/* Labels selecting the operator pod. */}}
{{- define "jobqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobqueue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jobqueue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobqueue.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The job-queue-system image reference. */}}
{{- define "jobqueue.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "jobqueue.redisName" -}}
{{- printf "%s-redis" (include "jobqueue.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobqueue.externalMetricsName" -}}
{{- printf "%s-metrics-api" (include "jobqueue.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret holding the external metrics API's serving certificate. */}}
{{- define "jobqueue.externalMetricsTLSSecret" -}}
{{- if eq .Values.externalMetrics.tls.mode "secret" }}
{{- required "externalMetrics.tls.existingSecret is required with tls.mode=secret" .Values.externalMetrics.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "jobqueue.externalMetricsName" .) }}
{{- end }}
{{- end }}
