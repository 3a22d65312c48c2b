{{- define "kiln.name" -}}kiln-operator{{- end -}}

{{- define "kiln.labels" -}}
app.kubernetes.io/name: kiln-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kiln.selector" -}}
app.kubernetes.io/name: kiln-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kiln.catalogName" -}}{{ .Release.Name }}-catalog{{- end -}}
