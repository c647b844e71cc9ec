{{/*
Names, labels and the daemon's argument list, shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "flagpole.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full resource name: fullnameOverride, or <release>-<name> (just <release> when it already has the name). */}}
{{- define "flagpole.fullname" -}}
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

{{- define "flagpole.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; they never change across upgrades. */}}
{{- define "flagpole.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flagpole.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flagpole.labels" -}}
helm.sh/chart: {{ include "flagpole.chart" . }}
{{ include "flagpole.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: flag-daemon
{{- end }}

{{- define "flagpole.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flagpole.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Whether the pods get the ServiceAccount token: asked for, or needed by the RBAC the chart creates. */}}
{{- define "flagpole.automountToken" -}}
{{- or .Values.serviceAccount.automountToken .Values.rbac.create }}
{{- end }}

{{/* The name of the ConfigMap holding the flag files (the chart's own, or flags.existingConfigMap.name). */}}
{{- define "flagpole.flagsConfigMap" -}}
{{- if .Values.flags.existingConfigMap.name }}
{{- .Values.flags.existingConfigMap.name }}
{{- else }}
{{- printf "%s-flags" (include "flagpole.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The flag file names in the mounted directory, sorted, as a JSON list. */}}
{{- define "flagpole.flagFiles" -}}
{{- $files := list }}
{{- if .Values.flags.existingConfigMap.name }}
{{- $files = .Values.flags.existingConfigMap.keys }}
{{- else }}
{{- $files = keys .Values.flags.files }}
{{- if .Values.flags.example }}
{{- $files = append $files "example.flags.json" }}
{{- end }}
{{- end }}
{{- $files | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The container arguments: `start`, the ports, the sources, then extraArgs. */}}
{{- define "flagpole.args" -}}
{{- $files := include "flagpole.flagFiles" . | fromJsonArray }}
{{- if and (not $files) (not .Values.uris) (not .Values.sources) }}
{{- fail "flagpole needs at least one source: set flags.files, flags.example, flags.existingConfigMap, uris or sources" }}
{{- end }}
- start
- --port
- {{ .Values.ports.evaluation | quote }}
- --management-port
- {{ .Values.ports.management | quote }}
- --sync-port
- {{ .Values.ports.sync | quote }}
- --ofrep-port
- {{ .Values.ports.ofrep | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
{{- if .Values.debug }}
- --debug
{{- end }}
{{- range $files }}
- --uri
- {{ printf "file:%s/%s" (trimSuffix "/" $.Values.flags.mountPath) . | quote }}
{{- end }}
{{- range .Values.uris }}
- --uri
- {{ . | quote }}
{{- end }}
{{- if .Values.sources }}
- --sources
- {{ .Values.sources | toJson | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
