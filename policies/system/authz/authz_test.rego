package system.authz_test

import data.system.authz

runtime := {"env": {"AKSON_OPA_PEP_TOKEN": "pep-token"}}

decision_query := {"method": "POST", "path": ["v1", "data", "akson", "authz", "decision"]}

test_health_open_allowed if {
	authz.allow with input as {"method": "GET", "path": ["health"]}
		with opa.runtime as runtime
}

test_pep_decision_allowed if {
	authz.allow with input as object.union(decision_query, {"identity": "pep-token"})
		with opa.runtime as runtime
}

test_export_decision_allowed if {
	authz.allow with input as {
		"method": "POST",
		"path": ["v1", "data", "akson", "export", "decision"],
		"identity": "pep-token",
	}
		with opa.runtime as runtime
}

test_anonymous_decision_denied if {
	not authz.allow with input as decision_query with opa.runtime as runtime
}

test_wrong_token_denied if {
	not authz.allow with input as object.union(decision_query, {"identity": "guess"})
		with opa.runtime as runtime
}

test_no_configured_token_denied if {
	not authz.allow with input as object.union(decision_query, {"identity": ""})
		with opa.runtime as {"env": {}}
}

test_pep_writes_and_reads_of_policies_denied if {
	every request in [
		{"method": "PUT", "path": ["v1", "data", "akson", "roles"]},
		{"method": "PATCH", "path": ["v1", "data"]},
		{"method": "DELETE", "path": ["v1", "data", "akson"]},
		{"method": "PUT", "path": ["v1", "policies", "evil"]},
		{"method": "DELETE", "path": ["v1", "policies", "akson"]},
		{"method": "GET", "path": ["v1", "policies"]},
		{"method": "GET", "path": ["v1", "data", "akson", "authz", "decision"]},
		{"method": "POST", "path": ["v1", "data", "system", "authz", "allow"]},
		{"method": "POST", "path": ["v1", "data", "akson"]},
		{"method": "POST", "path": ["v1", "query"]},
		{"method": "POST", "path": ["v1", "compile"]},
		{"method": "GET", "path": ["v1", "config"]},
	] {
		not authz.allow with input as object.union(request, {"identity": "pep-token"})
			with opa.runtime as runtime
	}
}
