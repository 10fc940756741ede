{{- define "cistern.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "cistern.labels" -}}
app.kubernetes.io/name: cistern
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The privileged CSI node plugin runs in a namespace of its own (Pod Security: privileged),
     so that the operator's namespace can enforce `restricted`. */}}
{{- define "cistern.csiNamespace" -}}
{{ .Values.csi.namespace | default .Release.Namespace }}
{{- end -}}
