{{/* Names, labels and paths shared by the templates. */}}

{{- define "duo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "duo.fullname" -}}
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

{{- define "duo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "duo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "duo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "duo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: duo-confidential
{{- end -}}

{{- define "duo.image" -}}
{{- $repo := required "image.repository is required: push dist/duo-confidential-<version>.oci.tar to your registry (docs/operations.md, Kubernetes)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "duo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "duo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret names: the user's existing Secret, else the chart's. */}}
{{- define "duo.apiKeySecret" -}}
{{- default (printf "%s-privatemode" (include "duo.fullname" .)) .Values.privatemode.existingSecret -}}
{{- end -}}
{{- define "duo.gatewayKeySecret" -}}
{{- default (printf "%s-gateway-keys" (include "duo.fullname" .)) .Values.gateway.signingKey.existingSecret -}}
{{- end -}}
{{- define "duo.adminSecret" -}}
{{- default (printf "%s-admin" (include "duo.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}
{{- define "duo.adminPasswordSet" -}}
{{- if or .Values.admin.existingSecret .Values.admin.passwordHash -}}true{{- end -}}
{{- end -}}
{{- define "duo.tlsSecret" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret is required with tls.mode existingSecret" .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "duo.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* DNS names every replica's certificate covers. */}}
{{- define "duo.tlsNames" -}}
{{- $fn := include "duo.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $fn (printf "%s.%s" $fn $ns) (printf "%s.%s.svc" $fn $ns) (printf "%s.%s.svc.cluster.local" $fn $ns) -}}
{{- if .Values.agentPlatform.enabled -}}
{{- $ap := printf "%s-agent-platform" $fn -}}
{{- $names = concat $names (list $ap (printf "%s.%s.svc" $ap $ns) (printf "%s.%s.svc.cluster.local" $ap $ns)) -}}
{{- end -}}
{{- $names = concat $names (list (printf "*.%s-headless.%s.svc" $fn $ns) (printf "*.%s-headless.%s.svc.cluster.local" $fn $ns) "localhost") -}}
{{- concat $names .Values.tls.extraNames | uniq | toJson -}}
{{- end -}}

{{/* Paths inside the container. */}}
{{- define "duo.paths" -}}
config: /etc/duo-confidential/config/config.yaml
stateMount: /var/lib/duo-confidential
stateDir: /var/lib/duo-confidential/data
apiKey: /etc/duo-confidential/privatemode/api-key
gatewayKeys: /etc/duo-confidential/gateway-keys
adminPassword: /etc/duo-confidential/admin/admin-password
tls: /etc/duo-confidential/tls
collateral: /etc/duo-confidential/collateral
outboundCA: /etc/duo-confidential/outbound-ca
{{- end -}}

{{- define "duo.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The same mounts for the config check and the appliance. */}}
{{- define "duo.volumeMounts" -}}
{{- $p := include "duo.paths" . | fromYaml -}}
- name: config
  mountPath: {{ dir $p.config }}
  readOnly: true
- name: state
  mountPath: {{ $p.stateMount }}
- name: tmp
  mountPath: /tmp
- name: privatemode
  mountPath: {{ dir $p.apiKey }}
  readOnly: true
- name: gateway-keys
  mountPath: {{ $p.gatewayKeys }}
  readOnly: true
- name: tls
  mountPath: {{ $p.tls }}
  readOnly: true
{{- if include "duo.adminPasswordSet" . }}
- name: admin
  mountPath: {{ dir $p.adminPassword }}
  readOnly: true
{{- end }}
{{- if .Values.airgapped.enabled }}
- name: collateral
  mountPath: {{ $p.collateral }}
  readOnly: true
{{- end }}
{{- if .Values.outbound.caBundle.configMap }}
- name: outbound-ca
  mountPath: {{ $p.outboundCA }}
  readOnly: true
{{- end }}
{{- end -}}
