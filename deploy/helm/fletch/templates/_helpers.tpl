{{/* Names and labels shared by every template. */}}
{{- define "fletch.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fletch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fletch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fletch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fletch.labels" -}}
{{ include "fletch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fletch.secretName" -}}
{{- if .Values.secret.create -}}
{{- include "fletch.fullname" . -}}
{{- else -}}
{{- required "secret.existingSecret is required when secret.create is false" .Values.secret.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Seconds Kubernetes waits after SIGTERM: the drain delay and grace period, plus 10 s. */}}
{{- define "fletch.terminationGrace" -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- $http := .Values.config.http | default dict -}}
{{- $ms := add ($http.shutdown_delay_ms | default 0) ($http.shutdown_grace_ms | default 30000) -}}
{{- add (div (add $ms 999) 1000) 10 -}}
{{- end -}}
{{- end -}}
