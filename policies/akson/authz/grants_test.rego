# The grants (legal bases) of akson.authz, table-driven: care_relation (purpose, categories,
# sensitive data), own_record, system_scope, sharing_consent, auditor; master data's calls.
package akson.authz_test

import data.akson.authz

# --- care_relation: purpose, categories, sensitivity ---------------------------------

test_care_relation_cases if {
	mismatches({
		"doctor reads a general note": {
			"input": ask(gp, "read", document, {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"registry purpose is not for practitioners": {
			"input": ask(gp, "read", document, {"purpose": "registry"}),
			"allow": false, "reasons": ["no_legal_basis", "purpose_not_allowed"],
		},
		"nav purpose is not for practitioners": {
			"input": ask(gp, "read", document, {"purpose": "nav"}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis", "purpose_not_allowed"],
		},
		"missing purpose fails closed": {
			"input": object.remove(ask(gp, "read", document, {}), ["context"]),
			"allow": false, "reasons": ["no_care_relation", "no_legal_basis", "purpose_not_allowed"],
		},
		"health worker reads the medication list": {
			"input": ask(practitioner("HF"), "read", doc("medication"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"physiotherapist does not read the medication list": {
			"input": ask(practitioner("FT"), "read", doc("medication"), {}),
			"allow": false, "reasons": ["no_legal_basis", "profession_not_allowed"],
		},
		"doctor does not read dental records": {
			"input": ask(gp, "read", doc("dental"), {}),
			"allow": false, "reasons": ["no_legal_basis", "profession_not_allowed"],
		},
		"dental hygienist reads dental records": {
			"input": ask(practitioner("TH"), "search", doc("dental"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"ambulance worker reads critical information": {
			"input": ask(practitioner("AA"), "read", doc("critical_info"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"social educator registers a consent directive": {
			"input": ask(practitioner("VP"), "write", typed("Consent", "consent"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"health worker does not read sexual health": {
			"input": ask(practitioner("HF"), "read", doc("sexual_health"), {}),
			"allow": false, "reasons": ["no_legal_basis", "profession_not_allowed"],
		},
		"psychologist reads child-welfare-related notes in own unit": {
			"input": ask(practitioner("PS"), "read", doc("child_welfare_related"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
	}) == []
}

test_sensitive_data_cases if {
	other_unit_relation := object.union(gp_relation, {"unit": "unit-other"})
	mismatches({
		"mental health in own unit": {
			"input": ask(gp, "read", doc("mental_health"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"mental health, relation with another unit": {
			"input": ask(gp, "read", doc("mental_health"), {"care_relations": [other_unit_relation]}),
			"allow": false, "reasons": ["no_legal_basis", "sensitive_requires_same_unit"],
		},
		"mental health recorded in another unit": {
			"input": ask(gp, "read", object.union(doc("mental_health"), {"unit": "unit-other"}), {}),
			"allow": false, "reasons": ["no_legal_basis", "sensitive_requires_same_unit"],
		},
		"mental health, resource unit unknown": {
			"input": ask(gp, "read", object.remove(doc("mental_health"), ["unit"]), {}),
			"allow": false, "reasons": ["no_legal_basis", "sensitive_requires_same_unit"],
		},
		"subject without unit: null never matches null": {
			"input": ask(
				object.remove(gp, ["unit"]), "read",
				object.union(doc("sexual_health"), {"unit": null}),
				{"care_relations": [object.union(gp_relation, {"unit": null})]},
			),
			"allow": false, "reasons": ["no_legal_basis", "sensitive_requires_same_unit"],
		},
		"a general note marked sensitive from another unit": {
			"input": ask(gp, "read", object.union(document, {"sensitivity": "sensitive", "unit": "unit-other"}), {}),
			"allow": false, "reasons": ["no_legal_basis", "sensitive_requires_same_unit"],
		},
		"a general note marked sensitive in own unit": {
			"input": ask(gp, "read", object.union(document, {"sensitivity": "sensitive"}), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"unknown sensitivity counts as sensitive": {
			"input": ask(gp, "read", object.union(document, {"sensitivity": "secret", "unit": "unit-other"}), {}),
			"allow": false, "reasons": ["no_legal_basis", "sensitive_requires_same_unit"],
		},
		"a general note from another unit is shared": {
			"input": ask(gp, "read", object.union(document, {"unit": "unit-other"}), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"writing sensitive data in own unit": {
			"input": ask(practitioner("PS"), "write", doc("mental_health"), {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"no relation and sensitive: both reasons": {
			"input": ask(gp, "read", object.union(doc("mental_health"), {"unit": "unit-other"}), {"care_relations": []}),
			"allow": false, "reasons": ["no_care_relation", "no_legal_basis", "sensitive_requires_same_unit"],
		},
	}) == []
}

test_every_listed_profession_reads_its_category_allowed if {
	every category, row in data.akson.authz.categories {
		every profession in row.professions {
			authz.decision.allow with input as ask(practitioner(profession), "read", doc(category), {})
		}
	}
}

test_unlisted_profession_reads_no_category_denied if {
	every category, _ in data.akson.authz.categories {
		d := authz.decision with input as ask(practitioner("FA1"), "read", doc(category), {})
		only_consent := category == "consent"
		d.allow == only_consent
	}
}

test_sensitive_categories_from_data if {
	sensitive := {category | some category, row in data.akson.authz.categories; row.sensitive == true}
	sensitive == {"mental_health", "sexual_health", "child_welfare_related"}
}

test_purposes_come_from_data_allowed if {
	# regal ignore:unresolved-reference
	d := authz.decision with input as ask(gp, "read", document, {"purpose": "research"})
		with authz.purposes.practitioner as ["research"]
	d.allow == true
}

# --- own_record: withheld documents, consent writes ----------------------------------------

test_own_record_cases if {
	consent_resource := typed("Consent", "consent")
	mismatches({
		"citizen reads own note": {
			"input": ask(citizen, "read", document, {}),
			"allow": true, "reasons": ["own_record"],
		},
		"citizen does not read a withheld note": {
			"input": ask(citizen, "read", object.union(document, {"withheld_from_patient": true}), {}),
			"allow": false, "reasons": ["no_legal_basis", "withheld_from_patient"],
		},
		"withheld malformed fails closed": {
			"input": ask(citizen, "search", object.union(document, {"withheld_from_patient": "no"}), {}),
			"allow": false, "reasons": ["no_legal_basis", "withheld_from_patient"],
		},
		"citizen writes own consent directive": {
			"input": ask(citizen, "write", consent_resource, {}),
			"allow": true, "reasons": ["own_record"],
		},
		"citizen does not write someone else's consent": {
			"input": ask(citizen, "write", object.union(consent_resource, {"patient": other_patient}), {}),
			"allow": false, "reasons": ["no_legal_basis", "not_own_record"],
		},
		"citizen does not write notes": {
			"input": ask(citizen, "write", document, {}),
			"allow": false, "reasons": ["action_not_allowed", "no_legal_basis"],
		},
		"citizen's own directives never stop them": {
			"input": ask(citizen, "read", document, {
				"purpose": "nav",
				"directives": [reservation("nav", []), block({"organisation": "974600951"})],
			}),
			"allow": true, "reasons": ["own_record"],
		},
		"citizen reads another patient's note": {
			"input": ask(citizen, "read", object.union(document, {"patient": other_patient}), {}),
			"allow": false, "reasons": ["no_legal_basis", "not_own_record"],
		},
	}) == []
}

# --- system_scope ------------------------------------------------------------------------

test_system_scope_cases if {
	mismatches({
		"lab delivers a result": {
			"input": ask(lab, "write", typed("DiagnosticReport", "lab_result"), {}),
			"allow": true, "reasons": ["system_scope"],
		},
		"lab does not read results": {
			"input": ask(lab, "read", typed("DiagnosticReport", "lab_result"), {}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"lab does not read notes": {
			"input": ask(lab, "read", document, {}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"a scope is no basis for a nav purpose": {
			"input": ask(registry_client, "read", document, {"purpose": "nav"}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
	}) == []
}

# --- sharing_consent: NAV and child welfare -------------------------------------------------

test_sharing_consent_cases if {
	mismatches({
		"nav reads under consent": {
			"input": ask(nav, "read", document, {"purpose": "nav", "directives": [nav_consent]}),
			"allow": true, "reasons": ["sharing_consent"],
		},
		"nav searches under consent": {
			"input": ask(nav, "search", doc("lab_result"), {"purpose": "nav", "directives": [nav_consent]}),
			"allow": true, "reasons": ["sharing_consent"],
		},
		"nav without consent": {
			"input": ask(nav, "read", document, {"purpose": "nav"}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent does not cover the category": {
			"input": ask(nav, "read", doc("mental_health"), {"purpose": "nav", "directives": [nav_consent]}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent is read-only": {
			"input": ask(nav, "write", document, {"purpose": "nav", "directives": [nav_consent]}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent names another recipient": {
			"input": ask(child_welfare, "read", document, {"purpose": "nav", "directives": [nav_consent]}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent for another purpose": {
			"input": ask(nav, "read", document, {
				"purpose": "child_welfare",
				"directives": [nav_consent],
			}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"child welfare reads under its consent": {
			"input": ask(child_welfare, "read", doc("child_welfare_related"), {
				"purpose": "child_welfare",
				"directives": [consent("999000037", "child_welfare", ["child_welfare_related"])],
			}),
			"allow": true, "reasons": ["sharing_consent"],
		},
		"inactive consent": {
			"input": ask(nav, "read", document, {
				"purpose": "nav",
				"directives": [object.union(nav_consent, {"active": false, "status": "withdrawn"})],
			}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent about another patient": {
			"input": ask(nav, "read", document, {
				"purpose": "nav",
				"directives": [object.union(nav_consent, {"patient": other_patient})],
			}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent purpose outside the table": {
			"input": ask(nav, "read", document, {
				"purpose": "insurance",
				"directives": [consent("999000029", "insurance", ["general"])],
			}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"consent and client without organisation: null never matches null": {
			"input": ask(object.remove(nav, ["organisation"]), "read", document, {
				"purpose": "nav",
				"directives": [consent(null, "nav", ["general"])],
			}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"consent categories malformed": {
			"input": ask(nav, "read", document, {
				"purpose": "nav",
				"directives": [consent("999000029", "nav", "general")],
			}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis"],
		},
		"nav for treatment has no basis": {
			"input": ask(nav, "read", document, {"directives": [nav_consent]}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"a practitioner is not a consent recipient": {
			"input": ask(object.union(gp, {"organisation": "999000029"}), "read", document, {
				"purpose": "nav",
				"directives": [nav_consent],
			}),
			"allow": false, "reasons": ["no_consent", "no_legal_basis", "purpose_not_allowed"],
		},
	}) == []
}

# --- auditor ------------------------------------------------------------------------------

test_auditor_cases if {
	audit_event := {"type": "AuditEvent", "patient": patient}
	mismatches({
		"auditor reads audit events": {
			"input": ask(auditor, "read", audit_event, {"purpose": "audit"}),
			"allow": true, "reasons": ["auditor"],
		},
		"auditor searches decision logs": {
			"input": ask(auditor, "search", {"type": "DecisionLog"}, {"purpose": "audit"}),
			"allow": true, "reasons": ["auditor"],
		},
		"auditor searches access logs": {
			"input": ask(auditor, "search", {"type": "AccessLog", "patient": patient}, {}),
			"allow": true, "reasons": ["auditor"],
		},
		"auditor does not read clinical notes": {
			"input": ask(auditor, "read", document, {"purpose": "audit"}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"auditor does not write the log": {
			"input": ask(auditor, "write", audit_event, {"purpose": "audit"}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"a practitioner with the auditor role": {
			"input": ask(object.union(gp, {"roles": ["auditor"]}), "read", audit_event, {}),
			"allow": true, "reasons": ["auditor"],
		},
		"no auditor role": {
			"input": ask(lab, "read", audit_event, {}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"roles malformed": {
			"input": ask(object.union(auditor, {"roles": {"role": "auditor"}}), "read", audit_event, {}),
			"allow": false, "reasons": ["missing_scope", "no_legal_basis"],
		},
		"unknown subject kind": {
			"input": ask(object.union(auditor, {"kind": "robot"}), "read", audit_event, {}),
			"allow": false, "reasons": ["no_legal_basis", "unknown_subject_kind"],
		},
	}) == []
}

# --- master data: every call services/masterdata/masterdata/api.py makes ------------------

test_masterdata_calls if {
	person := {"type": "Patient", "patient": patient, "category": "demographics", "sensitivity": "normal"}
	relations := {"type": "CareRelation", "patient": patient, "category": "demographics", "sensitivity": "normal"}
	registry := {"care_relations": [], "purpose": "registry"}
	mismatches({
		"register writes a person": {
			"input": ask(registry_client, "write", {"type": "Patient", "patient": patient}, registry),
			"allow": true, "reasons": ["system_scope"], "obligations": ["reveal_address"],
		},
		"register writes a practitioner": {
			"input": ask(registry_client, "write", {"type": "Practitioner"}, registry),
			"allow": true, "reasons": ["system_scope"],
		},
		"register writes a care relation": {
			"input": ask(registry_client, "write", {"type": "CareRelation", "patient": patient}, registry),
			"allow": true, "reasons": ["system_scope"],
		},
		"register reads a person with the address": {
			"input": ask(registry_client, "read", person, {}),
			"allow": true, "reasons": ["system_scope"], "obligations": ["reveal_address"],
		},
		"practitioner does not write the register": {
			"input": ask(gp, "write", {"type": "Patient", "patient": patient}, registry),
			"allow": false,
			"reasons": ["no_care_relation", "no_legal_basis", "purpose_not_allowed", "unknown_category"],
		},
		"practitioner does not write the directory": {
			"input": ask(gp, "write", {"type": "Organization"}, registry),
			"allow": false,
			"reasons": ["no_care_relation", "no_legal_basis", "purpose_not_allowed", "unknown_category"],
		},
		"practitioner reads own patient's person record": {
			"input": ask(gp, "read", person, {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"practitioner searches own patient's care relations": {
			"input": ask(practitioner("TH"), "search", relations, {}),
			"allow": true, "reasons": ["care_relation"],
		},
		"practitioner searches persons without an identifier": {
			"input": ask(gp, "search", {"type": "Patient", "category": "demographics"}, {"care_relations": []}),
			"allow": false, "reasons": ["no_care_relation", "no_legal_basis"],
		},
		"practitioner reads the directory": {
			"input": ask(gp, "read", {"type": "Practitioner"}, {"care_relations": []}),
			"allow": true, "reasons": ["directory"],
		},
		"citizen reads own person record": {
			"input": ask(citizen, "read", person, {"care_relations": []}),
			"allow": true, "reasons": ["own_record"], "obligations": ["reveal_address"],
		},
	}) == []
}
