# SMART v2 scopes only narrow (scopes.rego), and the app registry's admins (authz.rego).
package akson.authz_test

import data.akson.authz

# gp, as a SMART app's token: granted scopes, the app and the launch patient
smart_gp(scopes) := object.union(gp, {"scopes": scopes, "app": "demo-app", "launch_patient": patient})

smart_citizen(scopes) := object.union(citizen, {"scopes": scopes, "app": "demo-app", "launch_patient": patient})

of_other_patient := object.union(document, {"patient": other_patient})

other_relation := object.union(gp_relation, {"patient": other_patient})

# a care relation with both patients, so only the scope can tell them apart
both := {"care_relations": [gp_relation, other_relation]}

flag := typed("Flag", "critical_info")

scope_cases := {
	"patient scope reads the launch patient's document": allows(
		ask(smart_gp(["patient/DocumentReference.rs"]), "read", document, both),
		["care_relation"],
	),
	"patient scope searches the launch patient's documents": allows(
		ask(smart_gp(["patient/DocumentReference.rs"]), "search", document, both),
		["care_relation"],
	),
	"patient scope never reaches another patient": denies(
		ask(smart_gp(["patient/DocumentReference.rs"]), "read", of_other_patient, both),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"patient scope never reaches another type": denies(
		ask(smart_gp(["patient/DocumentReference.rs"]), "read", flag, both),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"a read scope does not write": denies(
		ask(smart_gp(["patient/DocumentReference.rs"]), "write", document, both),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"c creates a new record": allows(
		ask(smart_gp(["patient/DocumentReference.c"]), "write", document, both),
		["care_relation"],
	),
	"c does not change an existing record": denies(
		ask(smart_gp(["patient/DocumentReference.c"]), "write", object.union(document, {"existing": true}), both),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"patient scope without a launch patient reaches nothing": denies(
		ask(object.union(smart_gp(["patient/*.rs"]), {"launch_patient": null}), "read", document, both),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"user wildcard is the user's own rights": allows(
		ask(smart_gp(["user/*.cruds"]), "read", of_other_patient, both),
		["care_relation"],
	),
	"an app's token without a resource scope reaches no record": denies(
		ask(smart_gp(["openid", "fhirUser", "launch/patient"]), "read", document, both),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"a citizen's app token without a resource scope reaches no record": denies(
		ask(smart_citizen(["openid", "fhirUser"]), "read", document, {}),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"a scope never grants what the care relation does not": denies(
		ask(smart_gp(["user/*.cruds"]), "read", of_other_patient, {}),
		["no_care_relation", "no_legal_basis"],
	),
	"a scope never lifts the profession rule": denies(
		ask(object.union(smart_gp(["user/*.cruds"]), {"profession": "FT"}), "read", doc("mental_health"), {}),
		["no_legal_basis", "profession_not_allowed"],
	),
	"a citizen's patient scope reads the own record": allows(
		ask(smart_citizen(["patient/DocumentReference.rs"]), "read", document, {}),
		["own_record"],
	),
	"a citizen's patient scope is no other type": denies(
		ask(smart_citizen(["patient/DocumentReference.rs"]), "read", flag, {}),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"a system scope is no scope for a person": denies(
		ask(smart_gp(["system/*.rs"]), "read", document, {}),
		["no_legal_basis", "outside_granted_scopes"],
	),
	"a user scope is no scope for a system": denies(
		ask(object.union(registry_client, {"scopes": ["user/*.cruds"]}), "read", document, {}),
		["missing_scope", "no_legal_basis", "outside_granted_scopes"],
	),
	"backend services: system scope reads": allows(
		ask(object.union(registry_client, {"scopes": ["system/DocumentReference.rs"]}), "read", document, {}),
		["system_scope"],
	),
	"backend services: system scope of another type": denies(
		ask(object.union(registry_client, {"scopes": ["system/Observation.rs"]}), "read", document, {}),
		["missing_scope", "no_legal_basis", "outside_granted_scopes"],
	),
	"emergency access is narrowed too": denies(
		ask(
			object.union(legevakt, {"scopes": ["patient/Flag.r"], "launch_patient": patient}),
			"read", document, {"care_relations": [], "emergency_reason": "life_threatening"},
		),
		["no_care_relation", "no_legal_basis", "outside_granted_scopes"],
	),
	"malformed scopes are not SMART scopes": allows(
		ask(object.union(gp, {"scopes": ["patient/document.rs", 7, "user/*.x"]}), "read", document, {}),
		["care_relation"],
	),
}

test_scope_cases if mismatches(scope_cases) == []

admin := {"id": "akson-dev-admin", "kind": "system", "roles": ["admin"], "scopes": []}

app := {"type": "App", "id": "demo-app"}

administration := {"purpose": "administration"}

admin_cases := {
	"the admin registers an app": allows(ask(admin, "write", app, administration), ["app_admin"]),
	"the admin lists apps": allows(ask(admin, "search", app, administration), ["app_admin"]),
	"not for another purpose": denies(ask(admin, "read", app, {}), ["admin_only", "missing_scope", "no_legal_basis"]),
	"an admin reads no health data": denies(
		ask(admin, "read", document, {}),
		["missing_scope", "no_legal_basis"],
	),
	"a scope is no admin right": denies(
		ask(object.union(registry_client, {"scopes": ["App.write"]}), "write", app, administration),
		["admin_only", "no_legal_basis"],
	),
	"an auditor is no admin": denies(
		ask(auditor, "read", app, administration),
		["admin_only", "missing_scope", "no_legal_basis"],
	),
	"a practitioner is no admin": denies(
		ask(gp, "read", app, administration),
		["admin_only", "no_care_relation", "no_legal_basis", "purpose_not_allowed", "unknown_category"],
	),
}

test_admin_cases if mismatches(admin_cases) == []

test_the_app_is_in_the_decision_input_allowed if {
	req := ask(smart_gp(["patient/DocumentReference.rs"]), "read", document, {})
	decided := authz.decision with input as req
	decided.allow
	req.subject.app == "demo-app"
}
