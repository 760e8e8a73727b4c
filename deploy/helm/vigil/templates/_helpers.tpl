{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vigil.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vigil.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "vigil.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "vigil.fullname" .)) -}}
{{- end -}}

{{/* Environment every vigil container gets: secrets as VIGIL__ overrides. */}}
{{- define "vigil.env" -}}
- name: VIGIL__CLICKHOUSE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "vigil.secretName" . }}
      key: clickhouse-password
{{- end -}}

{{- define "vigil.volumes" -}}
- name: config
{{- if .Values.configInSecret }}
  secret:
    secretName: {{ include "vigil.fullname" . }}-config
{{- else }}
  configMap:
    name: {{ include "vigil.fullname" . }}-config
{{- end }}
- name: secrets
  secret:
    secretName: {{ include "vigil.secretName" . }}
{{- end -}}

{{- define "vigil.mounts" -}}
- name: config
  mountPath: /etc/vigil
  readOnly: true
- name: secrets
  mountPath: /run/secrets/vigil
  readOnly: true
{{- end -}}

{{- define "vigil.args" -}}
- --config
- /etc/vigil/vigil.toml
{{- end -}}
