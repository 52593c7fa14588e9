package manifests_test

import data.manifests

_labels := {"app.kubernetes.io/instance": "akson", "app.kubernetes.io/component": "journal"}

_container := {
	"name": "journal",
	"resources": {
		"requests": {"cpu": "100m", "memory": "64Mi"},
		"limits": {"cpu": "1", "memory": "256Mi"},
	},
	"securityContext": {
		"allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem": true,
		"capabilities": {"drop": ["ALL"]},
	},
	"env": [{"name": "AKSON_JOURNAL_MONGO_URL", "valueFrom": {"secretKeyRef": {"name": "m", "key": "k"}}}],
}

_pod_security := {"runAsNonRoot": true, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}

_deployment(name, app_id, container) := {
	"apiVersion": "apps/v1",
	"kind": "Deployment",
	"metadata": {"name": name},
	"spec": {"template": {
		"metadata": {"labels": _labels, "annotations": {"dapr.io/app-id": app_id}},
		"spec": {"securityContext": _pod_security, "containers": [container]},
	}},
}

_network_policy := {
	"kind": "NetworkPolicy",
	"metadata": {"name": "np"},
	"spec": {"podSelector": {"matchLabels": _labels}},
}

_pdb := {"kind": "PodDisruptionBudget", "metadata": {"name": "pdb"}, "spec": {"selector": {"matchLabels": _labels}}}

_component(metadata, scopes) := {
	"apiVersion": "dapr.io/v1alpha1",
	"kind": "Component",
	"metadata": {"name": "pubsub"},
	"spec": {"type": "pubsub.redis", "version": "v1", "metadata": metadata},
	"scopes": scopes,
}

_good := [
	_deployment("journal", "journal", _container),
	_network_policy,
	_pdb,
	_component([{"name": "redisPassword", "secretKeyRef": {"name": "r", "key": "p"}}], ["journal"]),
	{"kind": "Secret", "metadata": {"name": "empty"}},
	"not an object",
]

_set(path, value) := {"op": "add", "path": path, "value": value}

_with_container(container) := array.concat([_deployment("journal", "journal", container)], array.slice(_good, 1, 6))

_denied(manifests_in) := found if {
	# regal ignore:with-outside-test-context
	found := manifests.deny with input as {"manifests": manifests_in}
}

test_good_manifests_allowed if {
	count(_denied(_good)) == 0
}

test_test_pod_checked_like_a_workload if {
	pod := {"kind": "Pod", "metadata": {"name": "t", "labels": {}}, "spec": {"containers": [_container]}}
	_denied([pod]) == {
		"Pod/t container journal: must run as non-root",
		"Pod/t container journal: seccompProfile must be RuntimeDefault or Localhost",
	}
}

test_privileged_denied if {
	container := json.patch(_container, [_set("/securityContext/privileged", true)])
	_denied(_with_container(container)) == {"Deployment/journal container journal: privileged"}
}

test_privilege_escalation_denied if {
	container := json.patch(_container, [{"op": "remove", "path": "/securityContext/allowPrivilegeEscalation"}])
	want := "Deployment/journal container journal: allowPrivilegeEscalation must be false"
	_denied(_with_container(container)) == {want}
}

test_root_user_denied if {
	container := json.patch(_container, [
		_set("/securityContext/runAsUser", 0),
		_set("/securityContext/runAsNonRoot", false),
	])
	_denied(_with_container(container)) == {
		"Deployment/journal container journal: runs as uid 0",
		"Deployment/journal container journal: must run as non-root",
	}
}

test_writable_root_filesystem_denied if {
	container := json.patch(_container, [_set("/securityContext/readOnlyRootFilesystem", false)])
	want := "Deployment/journal container journal: root filesystem must be read-only"
	_denied(_with_container(container)) == {want}
}

test_capabilities_kept_denied if {
	container := json.patch(_container, [{"op": "remove", "path": "/securityContext/capabilities"}])
	_denied(_with_container(container)) == {"Deployment/journal container journal: must drop ALL capabilities"}
}

test_unconfined_seccomp_denied if {
	container := json.patch(_container, [_set("/securityContext/seccompProfile", {"type": "Unconfined"})])
	want := "Deployment/journal container journal: seccompProfile must be RuntimeDefault or Localhost"
	_denied(_with_container(container)) == {want}
}

test_missing_limits_denied if {
	container := json.patch(_container, [{"op": "remove", "path": "/resources/limits"}])
	_denied(_with_container(container)) == {
		"Deployment/journal container journal: resources.limits.cpu not set",
		"Deployment/journal container journal: resources.limits.memory not set",
	}
}

test_plaintext_secret_env_denied if {
	container := json.patch(_container, [_set("/env/-", {"name": "AKSON_JOURNAL_APP_API_TOKEN", "value": "x"})])
	want := "Deployment/journal container journal: env AKSON_JOURNAL_APP_API_TOKEN must come from a Secret"
	_denied(_with_container(container)) == {want}
}

test_unscoped_component_denied if {
	manifests_in := array.concat(array.slice(_good, 0, 3), [_component([], [])])
	_denied(manifests_in) == {"Component/pubsub: Dapr component without scopes"}
}

test_plaintext_component_secret_denied if {
	component := _component([{"name": "redisPassword", "value": "x"}], ["journal"])
	manifests_in := array.concat(array.slice(_good, 0, 3), [component])
	_denied(manifests_in) == {"Component/pubsub: metadata \"redisPassword\" must be a secretKeyRef"}
}

test_secret_with_data_denied if {
	secret := {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "x"}}
	want := "Secret/s: carries secret values (create Secrets outside the chart)"
	_denied(array.concat(_good, [secret])) == {want}
}

test_workload_without_network_policy_or_pdb_denied if {
	_denied([_deployment("journal", "journal", _container)]) == {
		"Deployment/journal: no NetworkPolicy selects its pods",
		"Deployment/journal: no PodDisruptionBudget selects its pods",
	}
}

test_selector_of_another_workload_not_counted if {
	other := json.patch(_network_policy, [_set("/spec/podSelector/matchLabels/app.kubernetes.io~1component", "audit")])
	want := "Deployment/journal: no NetworkPolicy selects its pods"
	_denied([_deployment("journal", "journal", _container), other, _pdb]) == {want}
}

test_duplicate_app_id_denied if {
	want := "Dapr app id \"journal\" is used by 2 workloads"
	_denied(array.concat(_good, [_deployment("journal-copy", "journal", _container)])) == {want}
}
