# METADATA
# title: OPA's own API
# description: |
#   OPA runs with --authentication=token --authorization=basic: it asks this
#   policy about every request to its API before serving it (these decisions
#   are not decision-logged). Only the enforcement points, holding the token
#   OPA finds in its environment (AKSON_OPA_PEP_TOKEN), may ask for decisions
#   under akson/; the readiness check is open. Nobody writes data or policies
#   through the API (they come from the policy files), reads the policies, or
#   evaluates ad-hoc queries.
package system.authz

# METADATA
# title: Allow
# description: Whether OPA serves the request (a refusal is a 401).
# entrypoint: true
default allow := false

allow if {
	input.method == "GET"
	input.path == ["health"]
}

allow if {
	input.method == "POST"
	array.slice(input.path, 0, 3) == ["v1", "data", "akson"]
	count(input.path) > 3
	enforcement_point
}

# METADATA
# title: Enforcement point
# description: The caller presented the enforcement points' bearer token.
enforcement_point if {
	token := object.get(opa.runtime(), ["env", "AKSON_OPA_PEP_TOKEN"], "")
	token != ""
	input.identity == token
}
