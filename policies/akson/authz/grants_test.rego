# The grants (legal bases) of akson.authz, table-driven: care_relation (purpose, categories,
# sensitive data), own_record, system_scope, sharing_consent, auditor; master data's calls.
package akson.authz_test

import data.akson.authz

# --- care_relation: purpose and categories -------------------------------------------------

care_relation_cases := {
	"doctor reads a general note": allows(ask(gp, "read", document, {}), ["care_relation"]),
	"registry purpose is not for practitioners": denies(
		ask(gp, "read", document, {"purpose": "registry"}),
		["no_legal_basis", "purpose_not_allowed"],
	),
	"nav purpose is not for practitioners": denies(
		ask(gp, "read", document, {"purpose": "nav"}),
		["no_consent", "no_legal_basis", "purpose_not_allowed"],
	),
	"missing purpose fails closed": denies(
		ask(gp, "read", document, {"purpose": null}),
		["no_legal_basis", "purpose_not_allowed"],
	),
	"no context at all": denies(
		{"subject": gp, "action": "read", "resource": document},
		["no_care_relation", "no_legal_basis", "purpose_not_allowed"],
	),
	"health worker reads the medication list": allows(
		ask(practitioner("HF"), "read", doc("medication"), {}),
		["care_relation"],
	),
	"physiotherapist does not read the medication list": denies(
		ask(practitioner("FT"), "read", doc("medication"), {}),
		["no_legal_basis", "profession_not_allowed"],
	),
	"doctor does not read dental records": denies(
		ask(gp, "read", doc("dental"), {}),
		["no_legal_basis", "profession_not_allowed"],
	),
	"dental hygienist reads dental records": allows(
		ask(practitioner("TH"), "search", doc("dental"), {}),
		["care_relation"],
	),
	"ambulance worker reads critical information": allows(
		ask(practitioner("AA"), "read", doc("critical_info"), {}),
		["care_relation"],
	),
	"social educator registers a consent directive": allows(
		ask(practitioner("VP"), "write", typed("Consent", "consent"), {}),
		["care_relation"],
	),
	"health worker does not read sexual health": denies(
		ask(practitioner("HF"), "read", doc("sexual_health"), {}),
		["no_legal_basis", "profession_not_allowed"],
	),
	"psychologist reads child-welfare-related notes in own unit": allows(
		ask(practitioner("PS"), "read", doc("child_welfare_related"), {}),
		["care_relation"],
	),
	"care relations as a map count as none": denies(
		ask(gp, "read", document, {"care_relations": {"r": gp_relation}}),
		["no_care_relation", "no_legal_basis"],
	),
}

test_care_relation_cases if mismatches(care_relation_cases) == []

# --- care_relation: sensitive data stays in the unit -----------------------------------------

other_unit_relation := object.union(gp_relation, {"unit": "unit-other"})

recorded_elsewhere(resource) := object.union(resource, {"unit": "unit-other"})

marked(sensitivity) := object.union(document, {"sensitivity": sensitivity})

same_unit := ["no_legal_basis", "sensitive_requires_same_unit"]

sensitive_cases := {
	"mental health in own unit": allows(ask(gp, "read", doc("mental_health"), {}), ["care_relation"]),
	"mental health, relation with another unit": denies(
		ask(gp, "read", doc("mental_health"), {"care_relations": [other_unit_relation]}),
		same_unit,
	),
	"mental health recorded in another unit": denies(
		ask(gp, "read", recorded_elsewhere(doc("mental_health")), {}),
		same_unit,
	),
	"mental health, resource unit unknown": denies(
		ask(gp, "read", object.remove(doc("mental_health"), ["unit"]), {}),
		same_unit,
	),
	"subject without unit: null never matches null": denies(
		ask(object.remove(gp, ["unit"]), "read", object.union(doc("sexual_health"), {"unit": null}), {}),
		same_unit,
	),
	"a general note marked sensitive from another unit": denies(
		ask(gp, "read", recorded_elsewhere(marked("sensitive")), {}),
		same_unit,
	),
	"a general note marked sensitive in own unit": allows(
		ask(gp, "read", marked("sensitive"), {}),
		["care_relation"],
	),
	"unknown sensitivity counts as sensitive": denies(
		ask(gp, "read", recorded_elsewhere(marked("secret")), {}),
		same_unit,
	),
	"a general note from another unit is shared": allows(
		ask(gp, "read", recorded_elsewhere(document), {}),
		["care_relation"],
	),
	"writing sensitive data in own unit": allows(
		ask(practitioner("PS"), "write", doc("mental_health"), {}),
		["care_relation"],
	),
	"no relation and sensitive: both reasons": denies(
		ask(gp, "read", recorded_elsewhere(doc("mental_health")), {"care_relations": []}),
		["no_care_relation", "no_legal_basis", "sensitive_requires_same_unit"],
	),
}

test_sensitive_cases if mismatches(sensitive_cases) == []

# regal ignore:unresolved-reference
category_table := authz.categories

test_every_listed_profession_reads_its_category_allowed if {
	every category, row in category_table {
		every profession in row.professions {
			authz.decision.allow with input as ask(practitioner(profession), "read", doc(category), {})
		}
	}
}

test_unlisted_profession_reads_no_category_denied if {
	every category, _ in category_table {
		d := authz.decision with input as ask(practitioner("FA1"), "read", doc(category), {})
		only_consent := category == "consent"
		d.allow == only_consent
	}
}

test_sensitive_categories_from_data if {
	sensitive := {category | some category, row in category_table; row.sensitive == true}
	sensitive == {"mental_health", "sexual_health", "child_welfare_related"}
}

test_purposes_come_from_data_allowed if {
	req := ask(gp, "read", document, {"purpose": "research"})

	# regal ignore:unresolved-reference
	d := authz.decision with input as req with authz.purposes.practitioner as ["research"]
	d.allow == true
}

# --- own_record: withheld documents, consent writes ----------------------------------------

consent_resource := typed("Consent", "consent")

own_record_cases := {
	"citizen reads own note": allows(ask(citizen, "read", document, {}), ["own_record"]),
	"citizen does not read a withheld note": denies(
		ask(citizen, "read", object.union(document, {"withheld_from_patient": true}), {}),
		["no_legal_basis", "withheld_from_patient"],
	),
	"withheld malformed fails closed": denies(
		ask(citizen, "search", object.union(document, {"withheld_from_patient": "no"}), {}),
		["no_legal_basis", "withheld_from_patient"],
	),
	"citizen writes own consent directive": allows(ask(citizen, "write", consent_resource, {}), ["own_record"]),
	"citizen does not write someone else's consent": denies(
		ask(citizen, "write", object.union(consent_resource, {"patient": other_patient}), {}),
		["no_legal_basis", "not_own_record"],
	),
	"citizen does not write notes": denies(
		ask(citizen, "write", document, {}),
		["action_not_allowed", "no_legal_basis"],
	),
	"citizen's own directives never stop them": allows(
		ask(citizen, "read", document, {"purpose": "nav", "directives": [reservation("nav", []), gp_org_block]}),
		["own_record"],
	),
	"citizen reads another patient's note": denies(
		ask(citizen, "read", object.union(document, {"patient": other_patient}), {}),
		["no_legal_basis", "not_own_record"],
	),
}

gp_org_block := block({"organisation": "974600951"})

test_own_record_cases if mismatches(own_record_cases) == []

# --- system_scope ------------------------------------------------------------------------

system_scope_cases := {
	"lab delivers a result": allows(
		ask(lab, "write", typed("DiagnosticReport", "lab_result"), {}),
		["system_scope"],
	),
	"lab does not read results": denies(
		ask(lab, "read", typed("DiagnosticReport", "lab_result"), {}),
		["missing_scope", "no_legal_basis"],
	),
	"lab does not read notes": denies(ask(lab, "read", document, {}), ["missing_scope", "no_legal_basis"]),
	"a scope is no basis for a nav purpose": denies(
		ask(registry_client, "read", document, {"purpose": "nav"}),
		["no_consent", "no_legal_basis"],
	),
}

test_system_scope_cases if mismatches(system_scope_cases) == []

# --- sharing_consent: NAV and child welfare -------------------------------------------------

under_nav_consent := {"purpose": "nav", "directives": [nav_consent]}

child_welfare_consent := consent("999000037", "child_welfare", ["child_welfare_related"])

no_consent := ["no_consent", "no_legal_basis"]

sharing_consent_cases := {
	"nav reads under consent": allows(ask(nav, "read", document, under_nav_consent), ["sharing_consent"]),
	"nav searches under consent": allows(
		ask(nav, "search", doc("lab_result"), under_nav_consent),
		["sharing_consent"],
	),
	"nav without consent": denies(ask(nav, "read", document, {"purpose": "nav"}), no_consent),
	"consent does not cover the category": denies(ask(nav, "read", doc("mental_health"), under_nav_consent), no_consent),
	"consent is read-only": denies(ask(nav, "write", document, under_nav_consent), no_consent),
	"consent names another recipient": denies(ask(child_welfare, "read", document, under_nav_consent), no_consent),
	"consent for another purpose": denies(
		ask(nav, "read", document, {"purpose": "child_welfare", "directives": [nav_consent]}),
		no_consent,
	),
	"child welfare reads under its consent": allows(
		ask(child_welfare, "read", doc("child_welfare_related"), {
			"purpose": "child_welfare",
			"directives": [child_welfare_consent],
		}),
		["sharing_consent"],
	),
	"inactive consent": denies(
		ask(nav, "read", document, {"purpose": "nav", "directives": [object.union(nav_consent, {"active": false})]}),
		no_consent,
	),
	"consent about another patient": denies(
		ask(nav, "read", document, {"purpose": "nav", "directives": [object.union(nav_consent, {"patient": other_patient})]}),
		no_consent,
	),
	"consent purpose outside the table": denies(
		ask(nav, "read", document, {"purpose": "insurance", "directives": [consent("999000029", "insurance", ["general"])]}),
		["missing_scope", "no_legal_basis"],
	),
	"consent and client without organisation: null never matches null": denies(
		ask(object.remove(nav, ["organisation"]), "read", document, {"purpose": "nav", "directives": [nobody_consent]}),
		no_consent,
	),
	"consent categories malformed": denies(
		ask(nav, "read", document, {"purpose": "nav", "directives": [consent("999000029", "nav", "general")]}),
		no_consent,
	),
	"nav for treatment has no basis": denies(
		ask(nav, "read", document, {"directives": [nav_consent]}),
		["missing_scope", "no_legal_basis"],
	),
	"a practitioner is not a consent recipient": denies(
		ask(object.union(gp, {"organisation": "999000029"}), "read", document, under_nav_consent),
		["no_consent", "no_legal_basis", "purpose_not_allowed"],
	),
}

nobody_consent := consent(null, "nav", ["general"])

test_sharing_consent_cases if mismatches(sharing_consent_cases) == []

# --- auditor ------------------------------------------------------------------------------

audit_event := {"type": "AuditEvent", "patient": patient}

for_audit := {"purpose": "audit"}

auditor_cases := {
	"auditor reads audit events": allows(ask(auditor, "read", audit_event, for_audit), ["auditor"]),
	"auditor searches decision logs": allows(ask(auditor, "search", {"type": "DecisionLog"}, for_audit), ["auditor"]),
	"auditor searches access logs": allows(
		ask(auditor, "search", {"type": "AccessLog", "patient": patient}, {}),
		["auditor"],
	),
	"auditor does not read clinical notes": denies(
		ask(auditor, "read", document, for_audit),
		["missing_scope", "no_legal_basis"],
	),
	"auditor records a review outcome": allows(
		ask(auditor, "write", {"type": "AccessReview", "patient": patient}, for_audit),
		["auditor"],
	),
	"only an auditor records a review outcome": denies(
		ask(lab, "write", {"type": "AccessReview", "patient": patient}, for_audit),
		["auditor_only", "missing_scope", "no_legal_basis"],
	),
	"auditor does not write the log": denies(
		ask(auditor, "write", audit_event, for_audit),
		["missing_scope", "no_legal_basis"],
	),
	"a practitioner with the auditor role": allows(
		ask(object.union(gp, {"roles": ["auditor"]}), "read", audit_event, {}),
		["auditor"],
	),
	"no auditor role": denies(ask(lab, "read", audit_event, {}), ["auditor_only", "missing_scope", "no_legal_basis"]),
	"roles malformed": denies(
		ask(object.union(auditor, {"roles": {"role": "auditor"}}), "read", audit_event, {}),
		["auditor_only", "missing_scope", "no_legal_basis"],
	),
	"unknown subject kind": denies(
		ask(object.union(auditor, {"kind": "robot"}), "read", audit_event, {}),
		["auditor_only", "no_legal_basis", "unknown_subject_kind"],
	),
}

test_auditor_cases if mismatches(auditor_cases) == []

# --- master data: every call services/masterdata/masterdata/api.py makes ------------------
# (ResourceRef/PolicyContext defaults: sensitivity normal, no directives, no patient facts)

person_record := {"type": "Patient", "patient": patient, "category": "demographics", "sensitivity": "normal"}

person_relations := object.union(person_record, {"type": "CareRelation"})

registry := {"care_relations": [], "purpose": "registry", "patient": null}

masterdata_cases := {
	"register writes a person": allows_with(
		ask(registry_client, "write", {"type": "Patient", "patient": patient}, registry),
		["system_scope"], ["reveal_address"],
	),
	"register writes a practitioner": allows(
		ask(registry_client, "write", {"type": "Practitioner"}, registry),
		["system_scope"],
	),
	"register writes a care relation": allows(
		ask(registry_client, "write", {"type": "CareRelation", "patient": patient}, registry),
		["system_scope"],
	),
	"register reads a person with the address": allows_with(
		ask(registry_client, "read", person_record, {}),
		["system_scope"], ["reveal_address"],
	),
	"practitioner does not write the register": denies(
		ask(gp, "write", {"type": "Patient", "patient": patient}, registry),
		["no_care_relation", "no_legal_basis", "purpose_not_allowed", "unknown_category"],
	),
	"practitioner does not write the directory": denies(
		ask(gp, "write", {"type": "Organization"}, registry),
		["no_care_relation", "no_legal_basis", "purpose_not_allowed", "unknown_category"],
	),
	"practitioner reads own patient's person record": allows(
		ask(gp, "read", person_record, {"patient": null}),
		["care_relation"],
	),
	"practitioner searches own patient's care relations": allows(
		ask(practitioner("TH"), "search", person_relations, {"patient": null}),
		["care_relation"],
	),
	"practitioner searches persons without an identifier": denies(
		ask(gp, "search", object.remove(person_record, ["patient"]), {"care_relations": []}),
		["no_care_relation", "no_legal_basis"],
	),
	"practitioner reads the directory": allows(
		ask(gp, "read", {"type": "Practitioner"}, {"care_relations": []}),
		["directory"],
	),
	"citizen reads own person record": allows_with(
		ask(citizen, "read", person_record, {"care_relations": []}),
		["own_record"], ["reveal_address"],
	),
}

test_masterdata_cases if mismatches(masterdata_cases) == []
