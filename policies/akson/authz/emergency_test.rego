# Emergency access (break-glass, nødrett), table-driven.
package akson.authz_test

import data.akson.authz

emergency_obligations := ["notify_patient", "review_emergency_access"]

# the legevakt doctor has no care relation: only the emergency can ground the access
urgent(subject, action, resource, context) := ask(
	subject, action, resource,
	object.union({"care_relations": [], "emergency_reason": "life_threatening"}, context),
)

test_emergency_grant_cases if {
	granted := {"allow": true, "reasons": ["emergency"], "obligations": emergency_obligations}
	mismatches({
		"doctor without relation, life threatening": object.union(granted, {"input": urgent(legevakt, "read", document, {})}),
		"search, unconscious patient": object.union(granted, {"input": urgent(legevakt, "search", doc("medication"), {
			"emergency_reason": "unconscious_patient",
		})}),
		"ambulance reads critical information": object.union(granted, {"input": urgent(ambulance, "read", doc("critical_info"), {
			"emergency_reason": "acute_care_no_relation",
		})}),
		"midwife reads lab results": object.union(granted, {"input": urgent(object.union(legevakt, {"profession": "JM"}), "read", doc("lab_result"), {})}),
		"a profession not listed for the category, in an emergency": object.union(granted, {"input": urgent(ambulance, "read", doc("lab_result"), {})}),
		"a care relation makes it a normal access": {
			"input": ask(gp, "read", document, {"emergency_reason": "life_threatening"}),
			"allow": true, "reasons": ["care_relation"],
		},
	}) == []
}

test_emergency_overrides_directives_cases if {
	overridden := {"allow": true, "reasons": ["directive_overridden", "emergency"], "obligations": emergency_obligations}
	elsewhere := object.union(document, {"municipality": "1103", "unit": "unit-stavanger"})
	mismatches({
		"a block of the doctor": object.union(overridden, {"input": urgent(legevakt, "read", document, {
			"directives": [block({"practitioner": "2000002"})],
		})}),
		"a block of the gp with a care relation": object.union(overridden, {"input": ask(gp, "read", document, {
			"emergency_reason": "unconscious_patient",
			"directives": [block({"practitioner": "1000001"})],
		})}),
		"a reservation against other municipalities": object.union(overridden, {"input": urgent(legevakt, "read", elsewhere, {
			"directives": [reservation("other_municipalities", [])],
		})}),
		"a directive that does not apply is not overridden": {
			"input": urgent(legevakt, "read", document, {"directives": [block({"practitioner": "1000001"})]}),
			"allow": true, "reasons": ["emergency"], "obligations": emergency_obligations,
		},
	}) == []
}

test_emergency_refusal_cases if {
	mismatches({
		"unknown reason code": {
			"input": urgent(legevakt, "read", document, {"emergency_reason": "curiosity"}),
			"allow": false, "reasons": ["emergency_reason_invalid", "no_care_relation", "no_legal_basis"],
		},
		"empty reason code": {
			"input": urgent(legevakt, "read", document, {"emergency_reason": ""}),
			"allow": false, "reasons": ["emergency_reason_invalid", "no_care_relation", "no_legal_basis"],
		},
		"reason that is not a string": {
			"input": urgent(legevakt, "read", document, {"emergency_reason": {"code": "life_threatening"}}),
			"allow": false, "reasons": ["emergency_reason_invalid", "no_care_relation", "no_legal_basis"],
		},
		"no reason": {
			"input": urgent(legevakt, "read", document, {"emergency_reason": null}),
			"allow": false, "reasons": ["no_care_relation", "no_legal_basis"],
		},
		"a sensitive category": {
			"input": urgent(legevakt, "read", doc("mental_health"), {}),
			"allow": false,
			"reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis", "sensitive_requires_same_unit"],
		},
		"a general note marked sensitive": {
			"input": urgent(legevakt, "read", object.union(document, {"sensitivity": "sensitive"}), {}),
			"allow": false,
			"reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis", "sensitive_requires_same_unit"],
		},
		"a sensitive category of a blocked doctor": {
			"input": urgent(legevakt, "read", doc("sexual_health"), {"directives": [block({"unit": "unit-legevakt"})]}),
			"allow": false,
			"reasons": [
				"blocked", "emergency_not_allowed", "no_care_relation",
				"no_legal_basis", "sensitive_requires_same_unit",
			],
		},
		"a category outside the emergency table": {
			"input": urgent(legevakt, "read", doc("radiology"), {}),
			"allow": false, "reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis"],
		},
		"a profession outside the emergency table": {
			"input": urgent(object.union(legevakt, {"profession": "HF"}), "read", document, {}),
			"allow": false, "reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis"],
		},
		"writing is no emergency access": {
			"input": urgent(legevakt, "write", document, {}),
			"allow": false, "reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis"],
		},
		"a purpose other than treatment": {
			"input": urgent(legevakt, "read", document, {"purpose": "registry"}),
			"allow": false,
			"reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis", "purpose_not_allowed"],
		},
		"a search without a patient": {
			"input": urgent(legevakt, "search", object.remove(document, ["patient"]), {}),
			"allow": false, "reasons": ["emergency_not_allowed", "no_care_relation", "no_legal_basis"],
		},
		"a citizen cannot break the glass": {
			"input": urgent(object.union(citizen, {"id": other_patient}), "read", document, {}),
			"allow": false, "reasons": ["emergency_not_allowed", "no_legal_basis", "not_own_record"],
		},
		"a system client cannot break the glass": {
			"input": urgent(lab, "read", document, {}),
			"allow": false, "reasons": ["emergency_not_allowed", "missing_scope", "no_legal_basis"],
		},
	}) == []
}

test_emergency_tables_come_from_data_allowed if {
	req := urgent(object.union(legevakt, {"profession": "HF"}), "read", doc("radiology"), {"emergency_reason": "flood"})
	tables := {"reasons": {"flood": "natural disaster"}, "professions": ["HF"], "categories": ["radiology"]}

	# regal ignore:unresolved-reference
	d := authz.decision with input as req with authz.emergency as tables
	d.allow == true
	d.reasons == ["emergency"]
}

test_emergency_reason_codes_documented if {
	every code, meaning in data.akson.authz.emergency.reasons {
		regex.match(`^[a-z_]+$`, code)
		meaning != ""
	}
}

test_emergency_never_sensitive_categories if {
	every category in data.akson.authz.emergency.categories {
		data.akson.authz.categories[category].sensitive == false
	}
}
