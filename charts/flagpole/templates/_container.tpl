{{/*
The flagpole container and its volumes: the Deployment's (mode: standalone) and, in mode: sidecar, the one a
parent chart puts into its own pods (see "flagpole.sidecar.container" below).
*/}}

{{/* The container, as one entry of a containers list. */}}
{{- define "flagpole.container" -}}
{{- $files := include "flagpole.flagFiles" . | fromJsonArray -}}
- name: flagpole
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    {{- include "flagpole.args" . | trim | nindent 4 }}
  env:
    # The pod's own name, for `$(POD_NAME)` in arguments (e.g. a source's intervalSeed).
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: evaluation
      containerPort: {{ .Values.ports.evaluation }}
      protocol: TCP
    - name: management
      containerPort: {{ .Values.ports.management }}
      protocol: TCP
    - name: sync
      containerPort: {{ .Values.ports.sync }}
      protocol: TCP
    - name: ofrep
      containerPort: {{ .Values.ports.ofrep }}
      protocol: TCP
  livenessProbe:
    {{- toYaml .Values.livenessProbe | nindent 4 }}
  readinessProbe:
    {{- toYaml .Values.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  {{- if or $files .Values.extraVolumeMounts }}
  volumeMounts:
    {{- if $files }}
    # The whole ConfigMap as a directory (never a single file by subPath), so that an update
    # swaps the `..data` symlink, which flagpole's directory watch picks up without a restart.
    - name: flags
      mountPath: {{ .Values.flags.mountPath }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}

{{/* The pod volumes the container needs (the flag ConfigMap, extraVolumes), as list entries; empty when none. */}}
{{- define "flagpole.volumes" -}}
{{- $files := include "flagpole.flagFiles" . | fromJsonArray -}}
{{- if $files }}
- name: flags
  configMap:
    name: {{ include "flagpole.flagsConfigMap" . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
mode: sidecar. A parent chart that lists this chart as a dependency puts flagpole into its own pods:

  initContainers:
    {{- include "flagpole.sidecar.container" .Subcharts.flagpole | nindent 8 }}
  volumes:
    {{- include "flagpole.sidecar.volumes" .Subcharts.flagpole | nindent 8 }}

With sidecar.native (Kubernetes 1.29+) the container carries `restartPolicy: Always`, which makes it a native
sidecar: listed under initContainers, it starts before the application and stops after it. Without it, list
it under containers instead.
*/}}
{{- define "flagpole.sidecar.container" -}}
{{- include "flagpole.container" . }}
{{- if .Values.sidecar.native }}
  restartPolicy: Always
{{- end }}
{{- end }}

{{- define "flagpole.sidecar.volumes" -}}
{{- include "flagpole.volumes" . }}
{{- end }}
