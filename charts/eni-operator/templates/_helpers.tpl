{{/* Name of the release's objects: the release name, prefixed with the chart's name unless it already contains it. */}}
{{- define "eni-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Chart.Name .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "eni-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (operator or agent); pass (list $ "operator"). */}}
{{- define "eni-operator.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ $ctx.Chart.Name }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "eni-operator.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The agent's user name as the API server sees its service-account token. */}}
{{- define "eni-operator.agentUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace .Values.serviceAccounts.agent.name -}}
{{- end -}}


{{/* KUBERNETES_SERVICE_HOST/PORT entries of a container's env when apiServer is set (explicit env wins over the kubelet's service env). */}}
{{- define "eni-operator.apiServerEnv" -}}
{{- $api := .Values.apiServer -}}
{{- if or $api.host (toString $api.port | ne "") -}}
{{- if not (and $api.host (toString $api.port | ne "")) -}}
{{- fail (printf "apiServer.host (%q) and apiServer.port (%q) must be set together: the other would stay the kubernetes Service's" (toString $api.host) (toString $api.port)) -}}
{{- end }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ $api.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ $api.port | int | toString | quote }}
{{- end -}}
{{- end -}}

{{/* Names of the metrics Services; also the job label their ServiceMonitors give. */}}
{{- define "eni-operator.metricsService" -}}
{{- printf "%s-%s-metrics" (include "eni-operator.fullname" (index . 0)) (index . 1) -}}
{{- end -}}
