# Emergency access (break-glass, nødrett), table-driven.
package akson.authz_test

import data.akson.authz

emergency_obligations := ["notify_patient", "review_emergency_access"]

# the legevakt doctor has no care relation: only the emergency can ground the access
urgent(subject, action, resource, context) := ask(
	subject, action, resource,
	object.union({"care_relations": [], "emergency_reason": "life_threatening"}, context),
)

granted(req) := allows_with(req, ["emergency"], emergency_obligations)

overridden(req) := allows_with(req, ["directive_overridden", "emergency"], emergency_obligations)

because(reason) := {"emergency_reason": reason}

midwife := object.union(legevakt, {"profession": "JM"})

emergency_grant_cases := {
	"doctor without relation, life threatening": granted(urgent(legevakt, "read", document, {})),
	"search, unconscious patient": granted(urgent(legevakt, "search", doc("medication"), because("unconscious_patient"))),
	"ambulance, acute care": granted(urgent(ambulance, "read", doc("critical_info"), because("acute_care_no_relation"))),
	"midwife reads lab results": granted(urgent(midwife, "read", doc("lab_result"), {})),
	"a profession not listed for the category": granted(urgent(ambulance, "read", doc("lab_result"), {})),
	"a care relation makes it a normal access": allows(
		ask(gp, "read", document, because("life_threatening")),
		["care_relation"],
	),
}

test_emergency_grant_cases if mismatches(emergency_grant_cases) == []

emergency_override_cases := {
	"a block of the doctor": overridden(urgent(legevakt, "read", document, with_directives([legevakt_block]))),
	"a block of the gp with a care relation": overridden(ask(gp, "read", document, {
		"emergency_reason": "unconscious_patient",
		"directives": [by_hpr],
	})),
	"a reservation against other municipalities": overridden(urgent(
		legevakt, "read", elsewhere,
		with_directives([all_categories]),
	)),
	"a directive that does not apply is not overridden": granted(urgent(
		legevakt, "read", document,
		with_directives([by_hpr]),
	)),
}

legevakt_block := block({"practitioner": "2000002"})

test_emergency_override_cases if mismatches(emergency_override_cases) == []

not_allowed := ["emergency_not_allowed", "no_care_relation", "no_legal_basis"]

invalid := ["emergency_reason_invalid", "no_care_relation", "no_legal_basis"]

sensitive_not_allowed := ["emergency_not_allowed", "no_care_relation", "no_legal_basis", "sensitive_requires_same_unit"]

emergency_refusal_cases := {
	"unknown reason code": denies(urgent(legevakt, "read", document, because("curiosity")), invalid),
	"empty reason code": denies(urgent(legevakt, "read", document, because("")), invalid),
	"reason that is not a string": denies(
		urgent(legevakt, "read", document, because({"code": "life_threatening"})),
		invalid,
	),
	"no reason": denies(urgent(legevakt, "read", document, because(null)), ["no_care_relation", "no_legal_basis"]),
	"a sensitive category": denies(urgent(legevakt, "read", doc("mental_health"), {}), sensitive_not_allowed),
	"a general note marked sensitive": denies(urgent(legevakt, "read", marked("sensitive"), {}), sensitive_not_allowed),
	"a sensitive category of a blocked doctor": denies(
		urgent(legevakt, "read", doc("sexual_health"), with_directives([legevakt_block])),
		array.concat(["blocked"], sensitive_not_allowed),
	),
	"a category outside the emergency table": denies(urgent(legevakt, "read", doc("radiology"), {}), not_allowed),
	"a profession outside the emergency table": denies(
		urgent(object.union(legevakt, {"profession": "HF"}), "read", document, {}),
		not_allowed,
	),
	"writing is no emergency access": denies(urgent(legevakt, "write", document, {}), not_allowed),
	"a purpose other than treatment": denies(
		urgent(legevakt, "read", document, {"purpose": "registry"}),
		array.concat(not_allowed, ["purpose_not_allowed"]),
	),
	"a search without a patient": denies(
		urgent(legevakt, "search", object.remove(document, ["patient"]), {}),
		not_allowed,
	),
	"a citizen cannot break the glass": denies(
		urgent(object.union(citizen, {"id": other_patient}), "read", document, {}),
		["emergency_not_allowed", "no_legal_basis", "not_own_record"],
	),
	"a system client cannot break the glass": denies(
		urgent(lab, "read", document, {}),
		["emergency_not_allowed", "missing_scope", "no_legal_basis"],
	),
}

test_emergency_refusal_cases if mismatches(emergency_refusal_cases) == []

test_emergency_tables_come_from_data_allowed if {
	req := urgent(object.union(legevakt, {"profession": "HF"}), "read", doc("radiology"), because("flood"))
	tables := {"reasons": {"flood": "natural disaster"}, "professions": ["HF"], "categories": ["radiology"]}

	# regal ignore:unresolved-reference
	d := authz.decision with input as req with authz.emergency as tables
	d.allow == true
	d.reasons == ["emergency"]
}

# regal ignore:unresolved-reference
emergency_table := authz.emergency

test_emergency_reason_codes_documented if {
	every code, meaning in emergency_table.reasons {
		regex.match(`^[a-z_]+$`, code)
		meaning != ""
	}
}

test_emergency_never_sensitive_categories if {
	every category in emergency_table.categories {
		category_table[category].sensitive == false
	}
}
