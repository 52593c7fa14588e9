{{/* Resource name prefix: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "akson.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "akson.labels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one workload; call with (dict "root" $ "name" <workload>). */}}
{{- define "akson.selectorLabels" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/*
Every enabled workload, as YAML: services merged over serviceDefaults, and OPA. Templates range
over this; nothing else lists the services.
*/}}
{{- define "akson.workloads" -}}
{{- $root := . -}}
{{- $workloads := dict -}}
{{- range $name, $entry := .Values.services -}}
{{- $w := mergeOverwrite (deepCopy $root.Values.serviceDefaults) (deepCopy (default dict $entry)) -}}
{{- if $w.enabled -}}
{{- $_ := set $w.dapr "appId" (default $name $w.dapr.appId) -}}
{{- if not $w.image.ref -}}
{{- $_ := set $w.image "ref" (printf "%s/%s%s:%s" $root.Values.image.registry $root.Values.image.repositoryPrefix $name (default $root.Chart.AppVersion $root.Values.image.tag)) -}}
{{- end -}}
{{- $_ := set $w "akson" true -}}
{{- $_ := set $workloads $name $w -}}
{{- end -}}
{{- end -}}
{{- if .Values.opa.enabled -}}
{{- $w := mergeOverwrite (deepCopy .Values.serviceDefaults) (deepCopy .Values.opa.workload) -}}
{{- $_ := set $w "akson" false -}}
{{- $opa := printf "%s-opa" (include "akson.fullname" .) -}}
{{- /* --ignore=..*: the kubelet lays a ConfigMap volume out as ..<timestamp>/ with a ..data symlink to it and a
symlink per top-level entry; OPA follows symlinks and would load every policy two or three times (annotations redeclared) */ -}}
{{- $_ := set $w "args" (list "run" "--server" "--skip-version-check" (printf "--addr=0.0.0.0:%v" $w.port) "--config-file=/config/config.yaml" (printf "--log-level=%s" .Values.opa.logLevel) "--authentication=token" "--authorization=basic" "--ignore=..*" "/policies") -}}
{{- $items := list -}}
{{- range $path, $_ := .Files.Glob "files/policies/**" -}}
{{- $rel := trimPrefix "files/policies/" $path -}}
{{- $items = append $items (dict "key" (replace "/" "__" $rel) "path" $rel) -}}
{{- end -}}
{{- $_ := set $w "volumes" (list (dict "name" "config" "mountPath" "/config" "configMap" (dict "name" (printf "%s-config" $opa))) (dict "name" "policies" "mountPath" "/policies" "configMap" (dict "name" (printf "%s-policies" $opa) "items" $items))) -}}
{{- $audit := index $workloads "audit" | default dict -}}
{{- $auditUrl := printf "http://%s-audit.%s.svc.%s:%v" (include "akson.fullname" .) .Release.Namespace .Values.clusterDomain ($audit.port | default 8000) -}}
{{- $token := .Values.secrets.auditUploadToken -}}
{{- $pep := .Values.secrets.opaToken -}}
{{- $_ := set $w "extraEnv" (list (dict "name" "AUDIT_URL" "value" $auditUrl) (dict "name" "AUDIT_UPLOAD_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" $token.name "key" $token.key))) (dict "name" "AKSON_OPA_PEP_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" $pep.name "key" $pep.key)))) -}}
{{- $_ := set $workloads "opa" $w -}}
{{- end -}}
{{- toYaml $workloads -}}
{{- end -}}

{{/* A Secret key reference from the `secrets:` map; call with (dict "root" $ "secret" <key under secrets>). */}}
{{- define "akson.secretRef" -}}
{{- $s := index .root.Values.secrets .secret -}}
secretKeyRef:
  name: {{ $s.name }}
  key: {{ $s.key }}
{{- end -}}

{{/* Checks the schema cannot express; fails the render with a message naming the value. */}}
{{- define "akson.validateValues" -}}
{{- $workloads := include "akson.workloads" . | fromYaml -}}
{{- if and .Values.opa.enabled (not (hasKey $workloads "audit")) -}}
{{- fail "opa.enabled needs the audit service: OPA uploads its decision logs to audit" -}}
{{- end -}}
{{- $appIds := dict -}}
{{- range $name, $w := $workloads -}}
{{- $at := ternary (printf "services.%s" $name) "opa.workload" $w.akson -}}
{{- range $target := $w.networkPolicy.allowTo -}}
{{- if not (hasKey $workloads $target) -}}
{{- fail (printf "%s.networkPolicy.allowTo: %q is not an enabled workload" $at $target) -}}
{{- end -}}
{{- end -}}
{{- range $target := $w.calls -}}
{{- if not (has $target $w.networkPolicy.allowTo) -}}
{{- fail (printf "%s.calls: %q is not in networkPolicy.allowTo (the NetworkPolicy would refuse the calls)" $at $target) -}}
{{- end -}}
{{- end -}}
{{- if $w.dapr.enabled -}}
{{- if hasKey $appIds $w.dapr.appId -}}
{{- fail (printf "Dapr app id %q is used by both services.%s and services.%s: set dapr.appId apart" $w.dapr.appId (get $appIds $w.dapr.appId) $name) -}}
{{- end -}}
{{- $_ := set $appIds $w.dapr.appId $name -}}
{{- range $target := $w.dapr.invokes -}}
{{- if not (and (hasKey $workloads $target) (index $workloads $target).dapr.enabled) -}}
{{- fail (printf "%s.dapr.invokes: %q is not an enabled workload with a Dapr sidecar" $at $target) -}}
{{- end -}}
{{- end -}}
{{- range $component := $w.dapr.components -}}
{{- if not (hasKey $.Values.components $component) -}}
{{- fail (printf "%s.dapr.components: %q is not defined under components" $at $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $w.akson $w.mongodb (not (hasKey $.Values.secrets $w.mongodbSecret)) -}}
{{- fail (printf "%s.mongodbSecret: %q is not defined under secrets" $at $w.mongodbSecret) -}}
{{- end -}}
{{- range $suffix, $secret := $w.secretEnv -}}
{{- if not (hasKey $.Values.secrets $secret) -}}
{{- fail (printf "%s.secretEnv.%s: %q is not defined under secrets" $at $suffix $secret) -}}
{{- end -}}
{{- end -}}
{{- if and $w.autoscaling.enabled (gt (int $w.autoscaling.minReplicas) (int $w.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling: minReplicas is above maxReplicas" $at) -}}
{{- end -}}
{{- end -}}
{{- end -}}
