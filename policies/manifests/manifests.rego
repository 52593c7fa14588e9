# METADATA
# title: Kubernetes manifest checks
# description: |
#   Checks over the manifests rendered from charts/akson (the chart tests render every
#   scenario under charts/akson/ci and evaluate `deny` with input {"manifests": [...]}).
#   Each message names the resource, so a failure explains itself.
package manifests

_workload_kinds := {"Deployment", "StatefulSet", "DaemonSet"}

# Names that hold credentials: their values must come from a Secret, never inline.
_secret_name_pattern := `(?i)(password|secret|token|credential|connectionstring|accesskey|apikey|privatekey)`

_resources := [m | some m in input.manifests; is_object(m)]

_workloads := [m | some m in _resources; m.kind in _workload_kinds]

# Pod specs with the resource they belong to.
_pods contains {"id": _id(m), "spec": m.spec.template.spec} if {
	some m in _workloads
}

_pods contains {"id": _id(m), "spec": m.spec} if {
	some m in _resources
	m.kind == "Pod"
}

_containers contains {"id": sprintf("%s container %s", [pod.id, c.name]), "pod": pod.spec, "container": c} if {
	some pod in _pods
	some field in ["initContainers", "containers"]
	some c in object.get(pod.spec, field, [])
}

_id(m) := sprintf("%s/%s", [m.kind, m.metadata.name])

# a container's own security setting, or the pod's when the container leaves it unset
_effective(c, key, fallback) := object.get(
	c.container,
	["securityContext", key],
	object.get(c.pod, ["securityContext", key], fallback),
)

_subset(selector, labels) if {
	every key, value in selector {
		labels[key] == value
	}
}

_selected_by(labels, kind, path) if {
	some m in _resources
	m.kind == kind
	selector := object.get(m, path, {})
	count(selector) > 0
	_subset(selector, labels)
}

_app_id(m) := m.spec.template.metadata.annotations["dapr.io/app-id"]

# METADATA
# title: Deny
# description: One message per violation; the rendered chart is acceptable when this is empty.
# entrypoint: true
deny contains sprintf("%s: privileged", [c.id]) if {
	some c in _containers
	c.container.securityContext.privileged == true
}

deny contains sprintf("%s: allowPrivilegeEscalation must be false", [c.id]) if {
	some c in _containers
	not c.container.securityContext.allowPrivilegeEscalation == false
}

deny contains sprintf("%s: must run as non-root", [c.id]) if {
	some c in _containers
	_effective(c, "runAsNonRoot", false) != true
}

deny contains sprintf("%s: runs as uid 0", [c.id]) if {
	some c in _containers
	_effective(c, "runAsUser", null) == 0
}

deny contains sprintf("%s: root filesystem must be read-only", [c.id]) if {
	some c in _containers
	not c.container.securityContext.readOnlyRootFilesystem == true
}

deny contains sprintf("%s: must drop ALL capabilities", [c.id]) if {
	some c in _containers
	not "ALL" in object.get(c.container, ["securityContext", "capabilities", "drop"], [])
}

deny contains sprintf("%s: seccompProfile must be RuntimeDefault or Localhost", [c.id]) if {
	some c in _containers
	not object.get(_effective(c, "seccompProfile", {}), "type", "") in {"RuntimeDefault", "Localhost"}
}

deny contains sprintf("%s: resources.%s.%s not set", [c.id, bound, kind]) if {
	some c in _containers
	some bound in ["requests", "limits"]
	some kind in ["cpu", "memory"]
	object.get(c.container, ["resources", bound, kind], null) == null
}

deny contains sprintf("%s: Dapr component without scopes", [_id(m)]) if {
	some m in _resources
	m.kind == "Component"
	startswith(m.apiVersion, "dapr.io/")
	count(object.get(m, "scopes", [])) == 0
}

deny contains sprintf("%s: no NetworkPolicy selects its pods", [_id(m)]) if {
	some m in _workloads
	labels := object.get(m.spec.template.metadata, "labels", {})
	not _selected_by(labels, "NetworkPolicy", ["spec", "podSelector", "matchLabels"])
}

deny contains sprintf("%s: no PodDisruptionBudget selects its pods", [_id(m)]) if {
	some m in _workloads
	labels := object.get(m.spec.template.metadata, "labels", {})
	not _selected_by(labels, "PodDisruptionBudget", ["spec", "selector", "matchLabels"])
}

deny contains sprintf("Dapr app id %q is used by %d workloads", [app_id, count(users)]) if {
	some app_id in {id | some m in _workloads; id := _app_id(m)}
	users := [m | some m in _workloads; _app_id(m) == app_id]
	count(users) > 1
}

deny contains sprintf("%s: carries secret values (create Secrets outside the chart)", [_id(m)]) if {
	some m in _resources
	m.kind == "Secret"
	count(object.get(m, "data", {})) + count(object.get(m, "stringData", {})) > 0
}

deny contains sprintf("%s: metadata %q must be a secretKeyRef", [_id(m), item.name]) if {
	some m in _resources
	m.kind == "Component"
	some item in object.get(m, ["spec", "metadata"], [])
	regex.match(_secret_name_pattern, item.name)
	"value" in object.keys(item)
}

deny contains sprintf("%s: env %s must come from a Secret", [c.id, env.name]) if {
	some c in _containers
	some env in object.get(c.container, "env", [])
	regex.match(_secret_name_pattern, env.name)
	"value" in object.keys(env)
}
