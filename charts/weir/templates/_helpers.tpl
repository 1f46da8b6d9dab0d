{{/*
Names, labels and the pieces both pods share.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name every object name starts with. Cut to 45 characters so that the longest suffixed
name ("<fullname>-operator-metrics") is still a valid Service name (63).
*/}}
{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of objects outside the release namespace (ClusterRole, Roles in watched namespaces):
the release namespace is part of it, so releases of the same name in two namespaces do not
collide.
*/}}
{{- define "weir.outsideName" -}}
{{- printf "%s-%s-operator" .Release.Namespace (include "weir.fullname" .) -}}
{{- end -}}

{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component: (dict "ctx" $ "component" "proxy"). */}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object of a component: (dict "ctx" $ "component" "proxy"). */}}
{{- define "weir.labels" -}}
helm.sh/chart: {{ include "weir.chart" .ctx }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: weir
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image reference: repository:tag, repository@digest, or repository:tag@digest. */}}
{{- define "weir.image" -}}
{{- $image := .Values.image -}}
{{- if and $image.digest (not $image.tag) -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- $ref := printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- if $image.digest }}{{ printf "%s@%s" $ref $image.digest }}{{ else }}{{ $ref }}{{ end -}}
{{- end -}}
{{- end -}}

{{- define "weir.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "weir.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "weir.proxy.serviceAccountName" -}}
{{- if .Values.proxy.serviceAccount.create -}}
{{- default (printf "%s-proxy" (include "weir.fullname" .)) .Values.proxy.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.proxy.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The public Service's ports, as JSON ({"http": 80, "https": 443}): the Service exposes them,
and Gateway listeners must name them (the operator's --gateway-http-port and
--gateway-https-port).
*/}}
{{- define "weir.proxy.servicePorts" -}}
{"http": 80, "https": 443}
{{- end -}}

{{/* The headless Service listing the proxies' admin endpoints for the operator. */}}
{{- define "weir.adminServiceName" -}}
{{- printf "%s-proxy-admin" (include "weir.fullname" .) -}}
{{- end -}}

{{/* The DNS name the admin certificate carries and the operator checks. */}}
{{- define "weir.adminServerName" -}}
{{- printf "%s.%s.svc" (include "weir.adminServiceName" .) .Release.Namespace -}}
{{- end -}}

{{- define "weir.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "weir.fullname" .)) .Values.adminToken.existingSecret -}}
{{- end -}}

{{- define "weir.adminTlsSecretName" -}}
{{- if .Values.adminTls.existingSecret -}}
{{- .Values.adminTls.existingSecret -}}
{{- else if .Values.certManager.enabled -}}
{{- printf "%s-admin-cert" (include "weir.fullname" .) -}}
{{- else -}}
{{- printf "%s-admin-tls" (include "weir.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Paths where both pods mount the admin token and certificate files. */}}
{{- define "weir.adminTokenDir" -}}/etc/weir/admin-token{{- end -}}
{{- define "weir.adminTlsDir" -}}/etc/weir/admin-tls{{- end -}}

{{/*
The admin token and certificate volumes: (dict "ctx" $ "tlsKeys" (list "ca.crt")). Only
the keys a pod needs are mounted: the operator never sees the private key.
*/}}
{{- define "weir.adminVolumes" -}}
- name: admin-token
  secret:
    secretName: {{ include "weir.adminTokenSecretName" .ctx }}
    defaultMode: 288 # 0440: owner and group (fsGroup) read
    items:
      - key: token
        path: token
- name: admin-tls
  secret:
    secretName: {{ include "weir.adminTlsSecretName" .ctx }}
    defaultMode: 288 # 0440: owner and group (fsGroup) read
    items:
      {{- range .tlsKeys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end -}}

{{- define "weir.adminVolumeMounts" -}}
- name: admin-token
  mountPath: {{ include "weir.adminTokenDir" . }}
  readOnly: true
- name: admin-tls
  mountPath: {{ include "weir.adminTlsDir" . }}
  readOnly: true
{{- end -}}

{{/*
Pod spec fields both workloads share, from a component's values:
(dict "ctx" $ "values" .Values.proxy "component" "proxy").
*/}}
{{- define "weir.podCommon" -}}
{{- $values := .values -}}
enableServiceLinks: false
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
{{- $selector := fromYaml (include "weir.selectorLabels" $) }}
topologySpreadConstraints:
  {{- range . }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" $selector) }}
  {{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Pod template metadata: (dict "ctx" $ "values" .Values.proxy "component" "proxy"). */}}
{{- define "weir.podMetadata" -}}
metadata:
  labels:
    {{- include "weir.selectorLabels" . | nindent 4 }}
    {{- with .values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The container fields both containers share. */}}
{{- define "weir.containerCommon" -}}
image: {{ include "weir.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/*
Probes of both containers, on their plain-HTTP metrics port: /healthz while the process
serves, /readyz once it can do its work.
*/}}
{{- define "weir.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
{{- end -}}
