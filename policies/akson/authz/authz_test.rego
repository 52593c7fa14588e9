package akson.authz_test

import data.akson.authz

# --- fixtures ------------------------------------------------------------------

patient := "12345678901"

other_patient := "10987654321"

gp := {
	"id": "prac-1",
	"kind": "practitioner",
	"hpr_number": "1000001",
	"profession": "LE",
	"organisation": "974600951",
	"unit": "unit-gp-1",
	"municipality": "4601",
	"roles": [],
	"scopes": [],
}

document := {
	"type": "DocumentReference",
	"patient": patient,
	"category": "general",
	"sensitivity": "normal",
	"unit": "unit-gp-1",
	"organisation": "974600951",
	"municipality": "4601",
	"author": "1000001",
	"withheld_from_patient": false,
	"content": {"text": "clinical note"},
}

gp_relation := {
	"patient": patient,
	"practitioner": "1000001",
	"unit": "unit-gp-1",
	"kind": "gp_list",
	"active": true,
}

unit_relation := {
	"patient": patient,
	"practitioner": "9999999",
	"unit": "unit-gp-1",
	"kind": "admission",
	"active": true,
}

citizen := {"id": patient, "kind": "citizen"}

system_client := {"id": "svc-ingest", "kind": "system", "scopes": ["DocumentReference.write", "Patient.read"]}

request(subject, action, resource, relations) := {
	"subject": subject,
	"action": action,
	"resource": resource,
	"context": {"care_relations": relations, "purpose": "treatment", "emergency_reason": null},
}

# --- practitioner ----------------------------------------------------------------

test_practitioner_with_own_care_relation_allowed if {
	d := authz.decision with input as request(gp, "read", document, [gp_relation])
	d.allow == true
	d.reasons == ["care_relation"]
	d.obligations == []
}

test_practitioner_search_and_write_allowed if {
	every action in ["search", "write"] {
		authz.decision.allow == true with input as request(gp, action, document, [gp_relation])
	}
}

test_practitioner_via_unit_relation_allowed if {
	d := authz.decision with input as request(gp, "read", document, [unit_relation])
	d.allow == true
	d.reasons == ["care_relation"]
}

test_practitioner_unit_match_without_hpr_allowed if {
	subject := object.remove(gp, ["hpr_number"])
	authz.decision.allow == true with input as request(subject, "read", document, [unit_relation])
}

test_practitioner_without_care_relation_denied if {
	d := authz.decision with input as request(gp, "read", document, [])
	d.allow == false
	d.reasons == ["no_care_relation", "no_legal_basis"]
}

test_practitioner_inactive_relation_denied if {
	relation := json.patch(gp_relation, [{"op": "replace", "path": "/active", "value": false}])
	d := authz.decision with input as request(gp, "read", document, [relation])
	d.allow == false
	"no_care_relation" in d.reasons
}

test_practitioner_relation_active_string_denied if {
	relation := json.patch(gp_relation, [{"op": "replace", "path": "/active", "value": "true"}])
	authz.decision.allow == false with input as request(gp, "read", document, [relation])
}

test_practitioner_relation_for_other_patient_denied if {
	relation := json.patch(gp_relation, [{"op": "replace", "path": "/patient", "value": other_patient}])
	d := authz.decision with input as request(gp, "read", document, [relation])
	d.allow == false
	d.reasons == ["no_care_relation", "no_legal_basis"]
}

test_practitioner_relation_for_other_practitioner_and_unit_denied if {
	relation := json.patch(gp_relation, [
		{"op": "replace", "path": "/practitioner", "value": "2000002"},
		{"op": "replace", "path": "/unit", "value": "unit-other"},
	])
	authz.decision.allow == false with input as request(gp, "read", document, [relation])
}

test_practitioner_missing_identifiers_null_relation_denied if {
	# null == null must not create a care relation
	subject := object.remove(gp, ["hpr_number", "unit"])
	relation := {"patient": patient, "practitioner": null, "unit": null, "active": true}
	authz.decision.allow == false with input as request(subject, "read", document, [relation])
}

test_practitioner_empty_identifiers_denied if {
	subject := object.union(gp, {"hpr_number": "", "unit": ""})
	relation := object.union(gp_relation, {"practitioner": "", "unit": ""})
	authz.decision.allow == false with input as request(subject, "read", document, [relation])
}

test_practitioner_missing_patient_denied if {
	resource := object.remove(document, ["patient"])
	relation := object.remove(gp_relation, ["patient"])
	authz.decision.allow == false with input as request(gp, "read", resource, [relation])
}

test_practitioner_profession_not_in_category_denied if {
	subject := object.union(gp, {"profession": "HF"})
	resource := object.union(document, {"category": "mental_health"})
	d := authz.decision with input as request(subject, "read", resource, [gp_relation])
	d.allow == false
	d.reasons == ["no_legal_basis", "profession_not_allowed"]
}

test_practitioner_psychologist_mental_health_allowed if {
	subject := object.union(gp, {"profession": "PS"})
	resource := object.union(document, {"category": "mental_health"})
	authz.decision.allow == true with input as request(subject, "read", resource, [gp_relation])
}

test_practitioner_missing_profession_denied if {
	subject := object.remove(gp, ["profession"])
	d := authz.decision with input as request(subject, "read", document, [gp_relation])
	d.allow == false
	"profession_not_allowed" in d.reasons
}

test_practitioner_unknown_category_denied if {
	resource := object.union(document, {"category": "genetics"})
	d := authz.decision with input as request(gp, "read", resource, [gp_relation])
	d.allow == false
	d.reasons == ["no_legal_basis", "unknown_category"]
}

test_practitioner_missing_category_denied if {
	resource := object.remove(document, ["category"])
	d := authz.decision with input as request(gp, "read", resource, [gp_relation])
	d.allow == false
	"unknown_category" in d.reasons
}

test_practitioner_all_failures_listed_denied if {
	subject := object.union(gp, {"profession": "TL"})
	resource := object.union(document, {"category": "mental_health"})
	d := authz.decision with input as request(subject, "read", resource, [])
	d.reasons == ["no_care_relation", "no_legal_basis", "profession_not_allowed", "sensitive_requires_same_unit"]
}

test_practitioner_unsupported_action_denied if {
	d := authz.decision with input as request(gp, "delete", document, [gp_relation])
	d.allow == false
	d.reasons == ["action_not_allowed", "no_legal_basis"]
}

test_practitioner_malformed_care_relations_denied if {
	every relations in ["nope", 42, null, {"a": 1}, [null, "x", 1]] {
		authz.decision.allow == false with input as request(gp, "read", document, relations)
	}
}

test_category_table_comes_from_data_allowed if {
	# The profession table is data, not code: changing it changes the decision.
	subject := object.union(gp, {"profession": "XX"})
	tables := {"general": {"professions": ["XX"]}}
	req := request(subject, "read", document, [gp_relation])

	# regal ignore:unresolved-reference
	d := authz.decision with input as req with authz.categories as tables
	d.allow == true
}

# --- citizen -----------------------------------------------------------------------

test_citizen_own_record_read_allowed if {
	d := authz.decision with input as request(citizen, "read", document, [])
	d.allow == true
	d.reasons == ["own_record"]
}

test_citizen_own_record_search_allowed if {
	authz.decision.allow == true with input as request(citizen, "search", document, [])
}

test_citizen_own_record_write_denied if {
	d := authz.decision with input as request(citizen, "write", document, [])
	d.allow == false
	d.reasons == ["action_not_allowed", "no_legal_basis"]
}

test_citizen_other_record_denied if {
	resource := object.union(document, {"patient": other_patient})
	d := authz.decision with input as request(citizen, "read", resource, [])
	d.allow == false
	d.reasons == ["no_legal_basis", "not_own_record"]
}

test_citizen_null_ids_denied if {
	subject := {"id": null, "kind": "citizen"}
	resource := object.union(document, {"patient": null})
	authz.decision.allow == false with input as request(subject, "read", resource, [])
}

test_citizen_care_relation_irrelevant_denied if {
	# a citizen is never granted access through someone's care relation
	subject := {"id": other_patient, "kind": "citizen", "hpr_number": "1000001", "unit": "unit-gp-1"}
	authz.decision.allow == false with input as request(subject, "read", document, [gp_relation])
}

# --- system client -------------------------------------------------------------------

test_system_with_scope_allowed if {
	d := authz.decision with input as request(system_client, "write", document, [])
	d.allow == true
	d.reasons == ["system_scope"]
}

test_system_patient_read_scope_allowed if {
	resource := {"type": "Patient", "patient": patient}
	authz.decision.allow == true with input as request(system_client, "read", resource, [])
}

test_system_without_scope_denied if {
	resource := {"type": "Patient", "patient": patient}
	d := authz.decision with input as request(system_client, "write", resource, [])
	d.allow == false
	d.reasons == ["missing_scope", "no_legal_basis"]
}

test_system_malformed_scopes_denied if {
	every scopes in [null, "DocumentReference.write", {"s": "DocumentReference.write"}] {
		subject := object.union(system_client, {"scopes": scopes})
		authz.decision.allow == false with input as request(subject, "write", document, [])
	}
}

test_system_missing_resource_type_denied if {
	resource := object.remove(document, ["type"])
	authz.decision.allow == false with input as request(system_client, "write", resource, [])
}

test_system_scope_does_not_grant_other_kinds_denied if {
	subject := object.union(gp, {"scopes": ["DocumentReference.read"]})
	authz.decision.allow == false with input as request(subject, "read", document, [])
}

# --- malformed input / fail closed ------------------------------------------------------

test_unknown_subject_kind_denied if {
	subject := object.union(gp, {"kind": "robot"})
	d := authz.decision with input as request(subject, "read", document, [gp_relation])
	d.allow == false
	d.reasons == ["no_legal_basis", "unknown_subject_kind"]
}

test_missing_input_denied if {
	d := authz.decision
	d.allow == false
	d.reasons == ["no_legal_basis", "unknown_subject_kind"]
	d.policy_version != "unknown"
}

test_non_object_input_denied if {
	every value in [null, "x", 1, [], {}, {"subject": "practitioner"}] {
		authz.decision.allow == false with input as value
	}
}

test_policy_version_from_data_allowed if {
	# data.json is loaded by `opa test policies/`, so a real version is reported
	authz.decision.policy_version != "unknown" with input as request(gp, "read", document, [gp_relation])

	# and it is taken from data, not from code
	# regal ignore:unresolved-reference
	d := authz.decision with authz.policy_version as "9.9.9"
	d.policy_version == "9.9.9"
}

test_policy_version_malformed_data_unknown if {
	every version in [null, "", 1] {
		# regal ignore:unresolved-reference
		d := authz.decision with authz.policy_version as version
		d.policy_version == "unknown"
		d.allow == false
	}
}

test_content_not_used_allowed if {
	resource := object.union(document, {"content": {"text": "anything", "allow": false}})
	authz.decision.allow == true with input as request(gp, "read", resource, [gp_relation])
}

# --- master data: directory, demographics, protected address ---------------------------

person := {"type": "Patient", "patient": patient, "category": "demographics"}

test_practitioner_reads_directory_without_care_relation_allowed if {
	every type in ["Practitioner", "Organization"] {
		every action in ["read", "search"] {
			d := authz.decision with input as request(gp, action, {"type": type}, [])
			d.allow == true
			d.reasons == ["directory"]
		}
	}
}

test_practitioner_writes_directory_denied if {
	d := authz.decision with input as request(gp, "write", {"type": "Organization"}, [])
	d.allow == false
	"no_care_relation" in d.reasons
}

test_directory_is_not_patient_data_denied if {
	every type in ["Patient", "CareRelation", "DocumentReference"] {
		authz.decision.allow == false with input as request(gp, "read", {"type": type}, [])
	}
}

test_citizen_does_not_read_directory_denied if {
	authz.decision.allow == false with input as request(citizen, "read", {"type": "Practitioner"}, [])
}

test_practitioner_reads_own_patient_demographics_allowed if {
	d := authz.decision with input as request(object.union(gp, {"profession": "HF"}), "read", person, [gp_relation])
	d.allow == true
	d.obligations == []
}

test_practitioner_reads_stranger_demographics_denied if {
	authz.decision.allow == false with input as request(gp, "read", person, [])
}

test_citizen_own_person_record_reveals_address_allowed if {
	d := authz.decision with input as request(citizen, "read", person, [])
	d.allow == true
	d.obligations == ["reveal_address"]
}

test_citizen_own_document_has_no_address_obligation_allowed if {
	d := authz.decision with input as request(citizen, "read", document, [])
	d.allow == true
	d.obligations == []
}

test_system_with_address_scope_reveals_address_allowed if {
	subject := object.union(system_client, {"scopes": ["Patient.read", "Patient.address"]})
	d := authz.decision with input as request(subject, "read", person, [])
	d.allow == true
	d.obligations == ["reveal_address"]
}

test_system_without_address_scope_no_obligation_allowed if {
	d := authz.decision with input as request(system_client, "read", person, [])
	d.allow == true
	d.obligations == []
}

test_address_scope_alone_grants_nothing_denied if {
	subject := object.union(system_client, {"scopes": ["Patient.address"]})
	d := authz.decision with input as request(subject, "read", person, [])
	d.allow == false
	d.obligations == []
}
