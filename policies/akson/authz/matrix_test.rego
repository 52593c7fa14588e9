# The access matrix of tests/integration/test_access_matrix.py, decided by the policy alone:
# the same staff, care relations, directive states, documents and subjects, and the matrix's
# own statement of the rules (its `expected` and `may_write`), restated here. If the two
# disagree, the integration test will too; this finds it without starting the stack.
package akson.authz_test

import data.akson.authz

# --- the world -------------------------------------------------------------------------------

matrix_staff := {
	"gp": {"hpr": "9300001", "profession": "LE", "unit": "u-gp", "organisation": "o-gp", "municipality": "4601"},
	"nurse": {"hpr": "9300002", "profession": "SP", "unit": "u-home", "organisation": "o-care", "municipality": "4601"},
	"physio": {"hpr": "9300003", "profession": "FT", "unit": "u-home", "organisation": "o-care", "municipality": "4601"},
	"psych": {"hpr": "9300004", "profession": "PS", "unit": "u-mh", "organisation": "o-mh", "municipality": "4601"},
	"away_gp": {"hpr": "9300005", "profession": "LE", "unit": "u-away", "organisation": "o-away", "municipality": "0301"},
	"stranger": {"hpr": "9300006", "profession": "LE", "unit": "u-er", "organisation": "o-er", "municipality": "4601"},
	"er_doc": {"hpr": "9300007", "profession": "LE", "unit": "u-er", "organisation": "o-er", "municipality": "4601"},
}

treating := {"gp", "nurse", "physio", "psych", "away_gp"}

matrix_professions := {
	"general": {"LE", "SP", "HF", "FT", "JM", "PS", "TL"},
	"critical_info": {"LE", "SP", "HF", "FT", "JM", "PS", "TL", "AA", "ET", "VP"},
	"medication": {"LE", "SP", "HF", "JM", "TL", "VP"},
	"mental_health": {"LE", "PS", "SP"},
}

matrix_emergency_categories := {"general", "critical_info", "medication"}

# (type, category, author) recorded for every patient
matrix_docs := {
	"gp_note": {"type": "DocumentReference", "category": "general", "author": "gp"},
	"away_note": {"type": "DocumentReference", "category": "general", "author": "away_gp"},
	"mh_note": {"type": "DocumentReference", "category": "mental_health", "author": "psych"},
	"allergy": {"type": "AllergyIntolerance", "category": "critical_info", "author": "gp"},
	"medication": {"type": "MedicationStatement", "category": "medication", "author": "gp"},
}

states := {"none", "block_gp", "block_unit", "reserve_municipal", "consent_nav", "withdrawn_block"}

# one patient per directive state, registered by the citizen through the consent service
matrix_directives := {
	"none": [],
	"block_gp": [block({"patient": "patient-block_gp", "practitioner": "9300001"})],
	"block_unit": [block({"patient": "patient-block_unit", "unit": "u-home"})],
	"reserve_municipal": [directive({
		"patient": "patient-reserve_municipal", "kind": "reservation",
		"scope": "other_municipalities", "categories": [],
	})],
	"consent_nav": [directive({
		"patient": "patient-consent_nav", "kind": "consent",
		"recipient_organisation": "999000029", "purpose": "nav", "categories": ["general"],
	})],
	"withdrawn_block": [block({
		"patient": "patient-withdrawn_block", "practitioner": "9300001",
		"status": "withdrawn", "active": false,
	})],
}

matrix_patient[state] := concat("-", ["patient", state]) if some state in states

# the GP list, home care and mental health relations, and the GP list in the other municipality
matrix_relations[state] := [
	{"patient": patient_id, "kind": "gp_list", "practitioner": "9300001", "unit": "u-gp", "active": true},
	{"patient": patient_id, "kind": "home_care", "practitioner": null, "unit": "u-home", "active": true},
	{"patient": patient_id, "kind": "mental_health", "practitioner": null, "unit": "u-mh", "active": true},
	{"patient": patient_id, "kind": "gp_list", "practitioner": "9300005", "unit": "u-away", "active": true},
] if {
	some state, patient_id in matrix_patient
}

# a resource as the journal describes it: recorded in its author's unit, organisation, municipality
matrix_resources[state][doc_name] := {
	"type": doc.type,
	"patient": patient_id,
	"category": doc.category,
	"sensitivity": "normal",
	"unit": author.unit,
	"organisation": author.organisation,
	"municipality": author.municipality,
	"author": author.hpr,
	"withheld_from_patient": false,
} if {
	some state, patient_id in matrix_patient
	some doc_name, doc in matrix_docs
	author := matrix_staff[doc.author]
}

practitioner_subject(staff) := {
	"id": concat(":", ["hpr", staff.hpr]), "kind": "practitioner",
	"hpr_number": staff.hpr, "profession": staff.profession,
	"unit": staff.unit, "organisation": staff.organisation,
	"municipality": staff.municipality, "roles": [], "scopes": [],
}

# --- the subjects: name -> {subject, purpose, emergency reason} -----------------------------

matrix_subjects[name] := {"subject": practitioner_subject(staff), "purpose": "treatment", "reason": null} if {
	some name, staff in matrix_staff
}

matrix_subjects[name] := {"subject": {"id": patient_id, "kind": "citizen"}, "purpose": "treatment", "reason": null} if {
	some state in {"none", "block_gp"}
	patient_id := matrix_patient[state]
	name := concat(":", ["citizen", state])
}

matrix_subjects["er_doc+emergency"] := {
	"subject": practitioner_subject(matrix_staff.er_doc),
	"purpose": "treatment", "reason": "life_threatening",
}

matrix_subjects.nav := {"subject": nav, "purpose": "nav", "reason": null}

matrix_subjects.lab := {"subject": lab, "purpose": "treatment", "reason": null}

matrix_subjects.auditor := {"subject": auditor, "purpose": "treatment", "reason": null}

# --- the matrix's own rules ------------------------------------------------------------------

matrix_cells contains [who, state, doc_name] if {
	some who, _ in matrix_subjects
	some state in states
	some doc_name, _ in matrix_docs
}

expected_allowed contains [who, state, doc_name] if {
	some [who, state, doc_name] in matrix_cells
	who == concat(":", ["citizen", state])
}

expected_allowed contains ["nav", "consent_nav", doc_name] if {
	some doc_name, doc in matrix_docs
	doc.category == "general"
}

expected_allowed contains ["er_doc+emergency", state, doc_name] if {
	some state in states
	some doc_name, doc in matrix_docs
	doc.category in matrix_emergency_categories
}

expected_allowed contains [who, state, doc_name] if {
	some [who, state, doc_name] in matrix_cells
	who in treating
	not matrix_blocked(who, state)
	doc := matrix_docs[doc_name]
	not matrix_reserved(who, state, doc)
	matrix_staff[who].profession in matrix_professions[doc.category]
	matrix_sensitive_ok(who, doc)
}

matrix_blocked("gp", "block_gp")

matrix_blocked(who, "block_unit") if matrix_staff[who].unit == "u-home"

matrix_reserved(who, "reserve_municipal", doc) if {
	matrix_staff[who].municipality != matrix_staff[doc.author].municipality
}

matrix_sensitive_ok(_, doc) if doc.category != "mental_health"

matrix_sensitive_ok(who, doc) if matrix_staff[who].unit == matrix_staff[doc.author].unit

may_write contains [who, state] if {
	some who in treating
	some state in states
	not matrix_blocked(who, state)
	matrix_staff[who].profession in matrix_professions.general
}

# --- what the policy decides -----------------------------------------------------------------

matrix_input(asker, action, state, resource) := {
	"subject": asker.subject,
	"action": action,
	"resource": resource,
	"context": {
		"care_relations": matrix_relations[state],
		"directives": matrix_directives[state],
		"patient": {"protected_address": false, "municipality": "4601", "deceased": false},
		"purpose": asker.purpose,
		"emergency_reason": asker.reason,
	},
}

# every read/search cell's input, by action and state
matrix_inputs[action][state][[who, state, doc_name]] := req if {
	some action in {"read", "search"}
	some [who, state, doc_name] in matrix_cells
	req := matrix_input(matrix_subjects[who], action, state, matrix_resources[state][doc_name])
}

# the journal records a written note in the writer's unit, organisation and municipality
write_inputs[[who, state]] := matrix_input(asker, "write", state, note) if {
	some who, asker in matrix_subjects
	some state in states
	note := object.union(matrix_resources[state].gp_note, {
		"unit": object.get(asker.subject, "unit", null),
		"organisation": object.get(asker.subject, "organisation", null),
		"municipality": object.get(asker.subject, "municipality", null),
	})
}

# the cells whose input the policy allows
allowed_cells(inputs) := {cell |
	some cell, req in inputs

	# regal ignore:with-outside-test-context
	authz.decision.allow with input as req
}

# One action on one directive state (small tests: `with input` is slow in `opa test`):
# no unauthorised success, no wrongful refusal.
matrix_agrees(action, state) if {
	expected := {cell | some cell in expected_allowed; cell[1] == state}
	allowed_cells(matrix_inputs[action][state]) == expected
}

test_matrix_none_reads_agree if matrix_agrees("read", "none")

test_matrix_none_searches_agree if matrix_agrees("search", "none")

test_matrix_block_gp_reads_agree if matrix_agrees("read", "block_gp")

test_matrix_block_gp_searches_agree if matrix_agrees("search", "block_gp")

test_matrix_block_unit_reads_agree if matrix_agrees("read", "block_unit")

test_matrix_block_unit_searches_agree if matrix_agrees("search", "block_unit")

test_matrix_reserve_municipal_reads_agree if matrix_agrees("read", "reserve_municipal")

test_matrix_reserve_municipal_searches_agree if matrix_agrees("search", "reserve_municipal")

test_matrix_consent_nav_reads_agree if matrix_agrees("read", "consent_nav")

test_matrix_consent_nav_searches_agree if matrix_agrees("search", "consent_nav")

test_matrix_withdrawn_block_reads_agree if matrix_agrees("read", "withdrawn_block")

test_matrix_withdrawn_block_searches_agree if matrix_agrees("search", "withdrawn_block")

test_matrix_writes_agree if allowed_cells(write_inputs) == may_write

test_matrix_has_both_outcomes if {
	count(matrix_cells) == (count(matrix_subjects) * count(states)) * count(matrix_docs)
	count(expected_allowed) > 0
	count(matrix_cells - expected_allowed) > 0
}
