{{/* Names and labels shared by every template. */}}

{{- define "trellis.fullname" -}}
{{- if contains "trellis" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-trellis" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trellis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: trellis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: trellis
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "trellis.selector" -}}
app.kubernetes.io/name: trellis
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "trellis.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "trellis.secretName" -}}
{{- default (printf "%s-secrets" (include "trellis.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* The whole trellis.toml: values.config with the chart's own settings over it. */}}
{{- define "trellis.config" -}}
{{- $name := include "trellis.fullname" . -}}
{{- $own := dict "server_name" .Values.serverName "remote" (dict
      "auth" (printf "http://%s-auth:9100" $name)
      "rooms" (printf "http://%s-rooms:9100" $name)
      "media" (printf "http://%s-media:9100" $name)) -}}
{{- if .Values.publicBaseUrl -}}
{{- $_ := set $own "public_baseurl" .Values.publicBaseUrl -}}
{{- end -}}
{{- $config := mergeOverwrite (deepCopy .Values.config) $own -}}
{{- if .Values.appserviceRegistrations -}}
{{- $appservices := default dict (get $config "appservices") -}}
{{- $files := default list (get $appservices "registration_files") -}}
{{- range $file, $_ := .Values.appserviceRegistrations -}}
{{- $files = append $files (printf "/etc/trellis/%s" $file) -}}
{{- end -}}
{{- $_ := set $appservices "registration_files" $files -}}
{{- $_ := set $config "appservices" $appservices -}}
{{- end -}}
{{- include "trellis.integers" $config -}}
{{- toToml $config -}}
{{- end -}}

{{/* Whole numbers in a map (and the maps in it) as integers: values files give every number
     as a float, and Trellis's u64 settings refuse `5000.0`. */}}
{{- define "trellis.integers" -}}
{{- range $key, $value := . -}}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) -}}
{{- $_ := set $ $key (int64 $value) -}}
{{- else if kindIs "map" $value -}}
{{- include "trellis.integers" $value -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod security: the image's non-root user, no privilege, a read-only root. */}}
{{- define "trellis.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "trellis.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
