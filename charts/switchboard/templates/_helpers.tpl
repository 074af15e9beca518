{{/*
Helpers. The chart keeps to a small subset of Helm's template language (define/include, if/else,
with, range, variables, and the functions default, trunc, trimSuffix, printf, contains, replace,
quote, toYaml, indent, nindent, eq, ne, not, and, or, until), which the repository's own renderer in
tests/src/gotmpl.rs understands too, so the chart is checked on machines without helm.
*/}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "switchboard.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "switchboard.registrar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: registrar
{{- end -}}

{{- define "switchboard.provisioning.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: provisioning
{{- end -}}

{{- define "switchboard.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "switchboard.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "switchboard.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.registrar.serviceAccountName" -}}
{{- if .Values.registrar.serviceAccount.create -}}
{{- default (printf "%s-registrar" (include "switchboard.fullname" .)) .Values.registrar.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.registrar.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.provisioning.serviceAccountName" -}}
{{- if .Values.provisioning.serviceAccount.create -}}
{{- default (printf "%s-provisioning" (include "switchboard.fullname" .)) .Values.provisioning.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.provisioning.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.provisioning.image" -}}
{{- printf "%s:%s" .Values.provisioning.image.repository (default .Chart.AppVersion .Values.provisioning.image.tag) -}}
{{- end -}}

{{- define "switchboard.provisioning.tlsSecretName" -}}
{{- default (printf "%s-provisioning-tls" (include "switchboard.fullname" .)) .Values.provisioning.tls.secretName -}}
{{- end -}}

{{- define "switchboard.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "switchboard.registrar.image" -}}
{{- printf "%s:%s" .Values.registrar.image.repository (default .Chart.AppVersion .Values.registrar.image.tag) -}}
{{- end -}}

{{- define "switchboard.registrar.tlsSecretName" -}}
{{- default (printf "%s-registrar-tls" (include "switchboard.fullname" .)) .Values.registrar.tls.secretName -}}
{{- end -}}

{{/* The Redis URL the registrar gets: an existing one wins over the in-chart one. */}}
{{- define "switchboard.redisUrl" -}}
{{- if .Values.redis.url -}}
{{- .Values.redis.url -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "switchboard.fullname" .) -}}
{{- end -}}
{{- end -}}
