# Obligations (reveal_address, mask_address, emergency follow-up) and fail-closed input.
package akson.authz_test

import data.akson.authz

protected := {"patient": {"protected_address": true, "municipality": "4601", "deceased": false}}

address_client := object.union(system_client, {"scopes": ["Patient.read", "Patient.address"]})

protected_emergency := object.union(protected, {"emergency_reason": "life_threatening"})

masked := ["mask_address"]

address_cases := {
	"practitioner reads a protected person": allows_with(
		ask(gp, "read", person_record, protected),
		["care_relation"], masked,
	),
	"practitioner reads a protected patient's note": allows_with(
		ask(gp, "read", document, protected),
		["care_relation"], masked,
	),
	"citizen reads own protected person record": allows_with(
		ask(citizen, "read", person_record, protected),
		["own_record"], ["reveal_address"],
	),
	"citizen reads own note, protected address": allows_with(
		ask(citizen, "read", document, protected),
		["own_record"], masked,
	),
	"register client with the address scope": allows_with(
		ask(address_client, "read", person_record, protected),
		["system_scope"], ["reveal_address"],
	),
	"system client without the address scope": allows_with(
		ask(system_client, "read", person_record, protected),
		["system_scope"], masked,
	),
	"emergency access to a protected patient": allows_with(
		ask(legevakt, "read", document, protected_emergency),
		["emergency"], ["mask_address", "notify_patient", "review_emergency_access"],
	),
	"a deny carries no obligations": denies(
		ask(legevakt, "read", person_record, protected),
		["no_care_relation", "no_legal_basis"],
	),
	"address not protected": allows(ask(gp, "read", person_record, {}), ["care_relation"]),
	"patient facts unknown": allows(ask(gp, "read", person_record, {"patient": null}), ["care_relation"]),
	"protected_address malformed fails closed": allows_with(
		ask(gp, "read", person_record, {"patient": {"protected_address": "strengt_fortrolig"}}),
		["care_relation"], masked,
	),
	"citizen's own reservation keeps reveal_address": allows_with(
		ask(citizen, "read", person_record, object.union(protected, with_directives([all_categories]))),
		["own_record"], ["reveal_address"],
	),
}

test_address_cases if mismatches(address_cases) == []

# --- fail closed: any malformed input is a deny with the decision defined ---------------------

malformed_inputs := [
	null, true, "x", 1, [], {}, [gp],
	{"subject": null},
	{"subject": gp},
	{"subject": gp, "action": "read"},
	{"subject": gp, "action": "read", "resource": "document"},
	{"subject": gp, "action": "read", "resource": document, "context": "ctx"},
	{"subject": gp, "action": "read", "resource": document, "context": {"care_relations": [gp_relation]}},
	{"subject": gp, "action": ["read"], "resource": document, "context": base_context},
	{"subject": gp, "action": "read", "resource": [document], "context": base_context},
	{"subject": object.union(gp, {"kind": ["LE"]}), "action": "read", "resource": document, "context": base_context},
	{"subject": object.union(gp, {"profession": ["LE"]}), "action": "read", "resource": document, "context": base_context},
	{"subject": citizen, "action": "read", "resource": {"patient": [patient]}, "context": base_context},
	{"subject": nav, "action": "read", "resource": document, "context": object.union(base_context, {"purpose": ["nav"]})},
]

test_malformed_input_always_decides_denied if {
	every value in malformed_inputs {
		d := authz.decision with input as value
		d.allow == false
		"no_legal_basis" in d.reasons
		d.obligations == []
		d.policy_version == "0.4.0"
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
