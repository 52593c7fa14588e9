# Shared fixtures for the table-driven tests of package akson.authz (grants_test.rego,
# directives_test.rego, emergency_test.rego, obligations_test.rego). The older fixtures
# (patient, gp, document, gp_relation, request...) live in authz_test.rego.
package akson.authz_test

import data.akson.authz

# --- subjects ----------------------------------------------------------------------

# a practitioner like gp, with another profession
practitioner(profession) := object.union(gp, {"profession": profession})

# the emergency clinic (legevakt) doctor: same municipality, no care relation with the patient
legevakt := {
	"id": "prac-2",
	"kind": "practitioner",
	"hpr_number": "2000002",
	"profession": "LE",
	"organisation": "974600952",
	"unit": "unit-legevakt",
	"municipality": "4601",
	"roles": [],
	"scopes": [],
}

ambulance := object.union(legevakt, {"id": "prac-3", "hpr_number": "3000003", "profession": "AA", "unit": "unit-amb"})

nav := {
	"id": "akson-dev-nav",
	"kind": "system",
	"organisation": "999000029",
	"roles": ["nav"],
	"scopes": [],
}

child_welfare := {
	"id": "akson-dev-child-welfare",
	"kind": "system",
	"organisation": "999000037",
	"roles": ["child_welfare"],
	"scopes": [],
}

lab := {
	"id": "akson-dev-lab",
	"kind": "system",
	"organisation": "999000010",
	"roles": [],
	"scopes": ["DiagnosticReport.write", "Observation.write"],
}

auditor := {
	"id": "akson-dev-auditor",
	"kind": "system",
	"organisation": "999000045",
	"roles": ["auditor"],
	"scopes": [],
}

# the test client: every scope on every type (infra/local/stack.py TEST_CLIENT_SCOPES)
registry_client := {
	"id": "akson-test",
	"kind": "system",
	"scopes": [
		"Patient.read", "Patient.search", "Patient.write", "Patient.address",
		"CareRelation.read", "CareRelation.search", "CareRelation.write",
		"Practitioner.write", "Organization.write",
		"DocumentReference.read", "DocumentReference.search", "DocumentReference.write",
	],
}

# --- resources ---------------------------------------------------------------------

# a document of this category, recorded in gp's unit and municipality
doc(category) := object.union(document, {"category": category})

# a resource of another type (same patient, origin)
typed(type, category) := object.union(document, {"type": type, "category": category})

# --- directives (ConsentDirectiveChangedV1 fields + active) ---------------------------

directive(fields) := object.union(
	{
		"directive_id": "dir-1",
		"version": 1,
		"patient": patient,
		"kind": "block",
		"status": "active",
		"active": true,
		"practitioner": null,
		"unit": null,
		"organisation": null,
		"categories": [],
		"scope": null,
		"recipient_organisation": null,
		"purpose": null,
		"period_start": "2026-01-01",
		"period_end": null,
	},
	fields,
)

block(fields) := directive(object.union({"kind": "block"}, fields))

reservation(scope, categories) := directive({"kind": "reservation", "scope": scope, "categories": categories})

consent(recipient, purpose, categories) := directive({
	"kind": "consent",
	"recipient_organisation": recipient,
	"purpose": purpose,
	"categories": categories,
})

nav_consent := consent("999000029", "nav", ["general", "lab_result"])

# --- requests ----------------------------------------------------------------------

base_context := {
	"care_relations": [gp_relation],
	"directives": [],
	"patient": {"protected_address": false, "municipality": "4601", "deceased": false},
	"purpose": "treatment",
	"emergency_reason": null,
}

# a request; `context` is merged over base_context (gp's care relation, treatment, no directives)
ask(subject, action, resource, context) := {
	"subject": subject,
	"action": action,
	"resource": resource,
	"context": object.union(base_context, context),
}

# --- table-driven checking -----------------------------------------------------------

# expected outcomes: a case is {input, allow, reasons, obligations}
allows(req, reasons) := {"input": req, "allow": true, "reasons": reasons, "obligations": []}

allows_with(req, reasons, obligations) := {"input": req, "allow": true, "reasons": reasons, "obligations": obligations}

denies(req, reasons) := {"input": req, "allow": false, "reasons": reasons, "obligations": []}

# The cases (name -> case) whose decision differs from the expected one, with what was
# decided: [] when every case holds.
mismatches(cases) := [sprintf("%s: %v", [name, decided]) |
	some name, case in cases

	# regal ignore:with-outside-test-context
	decided := authz.decision with input as case.input
	not expected(decided, case)
]

expected(decided, case) if {
	decided.allow == case.allow
	decided.reasons == case.reasons
	decided.obligations == case.obligations
}
