# Obligations (reveal_address, mask_address, emergency follow-up) and fail-closed input.
package akson.authz_test

import data.akson.authz

protected := {"patient": {"protected_address": true, "municipality": "4601", "deceased": false}}

test_address_obligation_cases if {
	person := {"type": "Patient", "patient": patient, "category": "demographics"}
	address_client := object.union(system_client, {"scopes": ["Patient.read", "Patient.address"]})
	mismatches({
		"practitioner reads a protected person": {
			"input": ask(gp, "read", person, protected),
			"allow": true, "reasons": ["care_relation"], "obligations": ["mask_address"],
		},
		"practitioner reads a protected patient's note": {
			"input": ask(gp, "read", document, protected),
			"allow": true, "reasons": ["care_relation"], "obligations": ["mask_address"],
		},
		"citizen reads own protected person record": {
			"input": ask(citizen, "read", person, protected),
			"allow": true, "reasons": ["own_record"], "obligations": ["reveal_address"],
		},
		"citizen reads own note, protected address": {
			"input": ask(citizen, "read", document, protected),
			"allow": true, "reasons": ["own_record"], "obligations": ["mask_address"],
		},
		"register client with the address scope": {
			"input": ask(address_client, "read", person, protected),
			"allow": true, "reasons": ["system_scope"], "obligations": ["reveal_address"],
		},
		"system client without the address scope": {
			"input": ask(system_client, "read", person, protected),
			"allow": true, "reasons": ["system_scope"], "obligations": ["mask_address"],
		},
		"emergency access to a protected patient": {
			"input": ask(legevakt, "read", document, object.union(protected, {"emergency_reason": "life_threatening"})),
			"allow": true, "reasons": ["emergency"],
			"obligations": ["mask_address", "notify_patient", "review_emergency_access"],
		},
		"a deny carries no obligations": {
			"input": ask(legevakt, "read", person, protected),
			"allow": false, "reasons": ["no_care_relation", "no_legal_basis"],
		},
		"address not protected": {
			"input": ask(gp, "read", person, {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"patient facts unknown": {
			"input": ask(gp, "read", person, {"patient": null}),
			"allow": true, "reasons": ["care_relation"],
		},
		"protected_address malformed fails closed": {
			"input": ask(gp, "read", person, {"patient": {"protected_address": "strengt_fortrolig"}}),
			"allow": true, "reasons": ["care_relation"], "obligations": ["mask_address"],
		},
	}) == []
}

test_blocked_citizen_self_keeps_reveal_address if {
	person := {"type": "Patient", "patient": patient, "category": "demographics"}
	req := ask(citizen, "read", person, object.union(protected, {"directives": [reservation("other_municipalities", [])]}))
	d := authz.decision with input as req
	d.obligations == ["reveal_address"]
}

# --- fail closed: any malformed input is a deny with the decision defined ---------------------

test_malformed_input_always_decides_denied if {
	every value in [
		null, true, "x", 1, [], {}, [gp],
		{"subject": null}, {"subject": gp},
		{"subject": gp, "action": "read"},
		{"subject": gp, "action": "read", "resource": "document"},
		{"subject": gp, "action": "read", "resource": document, "context": "ctx"},
		{"subject": gp, "action": "read", "resource": document, "context": {"care_relations": [gp_relation]}},
		{"subject": gp, "action": ["read"], "resource": document, "context": base_context},
		{"subject": gp, "action": "read", "resource": [document], "context": base_context},
		{"subject": object.union(gp, {"kind": ["practitioner"]}), "action": "read", "resource": document, "context": base_context},
		{"subject": object.union(gp, {"profession": ["LE"]}), "action": "read", "resource": document, "context": base_context},
		{"subject": citizen, "action": "read", "resource": {"patient": [patient]}, "context": base_context},
		{"subject": nav, "action": "read", "resource": document, "context": object.union(base_context, {"purpose": ["nav"]})},
	] {
		d := authz.decision with input as value
		d.allow == false
		"no_legal_basis" in d.reasons
		d.obligations == []
		d.policy_version == "0.3.0"
	}
}

test_malformed_context_fields_denied if {
	every context in [
		{"care_relations": {"r": gp_relation}},
		{"purpose": null},
		{"purpose": ["treatment"]},
		{"emergency_reason": ["life_threatening"], "care_relations": []},
		{"patient": "protected", "care_relations": []},
	] {
		d := authz.decision with input as ask(gp, "read", document, context)
		d.allow == false
		"no_legal_basis" in d.reasons
	}
}

test_decision_shape_always_the_same if {
	every value in [null, ask(gp, "read", document, {}), ask(citizen, "write", document, {})] {
		d := authz.decision with input as value
		object.keys(d) == {"allow", "reasons", "obligations", "policy_version"}
		is_boolean(d.allow)
		is_array(d.reasons)
		count(d.reasons) > 0
		is_array(d.obligations)
	}
}
