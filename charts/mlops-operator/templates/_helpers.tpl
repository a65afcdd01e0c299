{{/* The chart's name, or nameOverride. */}}
{{- define "mlops-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: the release name when it already holds the chart's name. */}}
{{- define "mlops-operator.fullname" -}}
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

{{- define "mlops-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "mlops-operator.labels" -}}
helm.sh/chart: {{ include "mlops-operator.chart" . }}
{{ include "mlops-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator Pod's selector: never changes between upgrades. */}}
{{- define "mlops-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlops-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlops-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (default appVersion). */}}
{{- define "mlops-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions inside the namespaces it watches: a Role's rules in namespaced mode, part of the
ClusterRole in cluster mode. Keep in step with what the controllers read and write.
*/}}
{{- define "mlops-operator.namespacedRules" -}}
# Exactly the requests the operator makes (tests/integration/test_rbac.py compares these rules with the API server's
# audit log of a whole test run). Our kinds: watched; a CanaryRollout's verbs are removed once acted on
# (DriftMonitors with onDrift.abortCanary give the abort verb); every controller patches its kind's status only.
- apiGroups: [mlops.io]
  resources: [canaryrollouts]
  verbs: [list, watch, patch]
- apiGroups: [mlops.io]
  resources: [modelversions, modeldeployments, driftmonitors, alertrules]
  verbs: [list, watch]
- apiGroups: [mlops.io]
  resources: [modelversions/status, modeldeployments/status, canaryrollouts/status, driftmonitors/status, alertrules/status]
  verbs: [patch]
# Children carry owner references that block their owner's deletion until they are gone; setting one needs
# update on the owner's finalizers (the OwnerReferencesPermissionEnforcement admission plugin). No request names it.
- apiGroups: [mlops.io]
  resources: [modelversions/finalizers, modeldeployments/finalizers]
  verbs: [update]
# Events about our objects (core/v1, created once each).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Reference profiles: applied (server-side apply is a patch, and a patch that creates the object is authorized as a
# create too) and collected with their ModelVersion by the garbage collector; read by DriftMonitors.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# The canary analysis and drift monitors: the direct provider lists the model server Pods of a deployment (their
# addresses and readiness); the prometheus provider and alert receivers read the Secrets a resource names for its
# credentials (get only: never list or watch).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# AlertRules with prometheusRule: true are exported as prometheus-operator PrometheusRules (server-side applied,
# collected with their AlertRule by the garbage collector; granted whether or not the CRD is installed).
- apiGroups: [monitoring.coreos.com]
  resources: [prometheusrules]
  verbs: [create, patch]
# A ModelDeployment's serving children and traffic routers (Gateway API HTTPRoutes, Istio VirtualServices; granted
# whether or not their CRDs are installed): watched, applied (create and patch), pruned; get confirms that a name
# the watch has not reported yet is taken.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
