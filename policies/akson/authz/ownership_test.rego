# Issue 14: auditor-only types stay auditor-only (the own-record grant, scopes and care
# relations never match them; the citizen's own access log is the one exception), and a
# system client changes or invalidates only records it (or its organisation) recorded.
package akson.authz_test

# a client holding a scope on every audit type (no scope is a basis for audit data)
audit_scoped := object.union(registry_client, {"scopes": [
	"DecisionLog.read", "DecisionLog.search", "AuditEvent.read", "AuditEvent.search",
	"AccessLog.read", "AccessReview.write",
]})

own_decisions := {"type": "DecisionLog", "patient": patient}

own_reviews := {"type": "AuditEvent", "patient": patient}

own_access_log := {"type": "AccessLog", "patient": patient}

auditor_only := ["auditor_only", "no_legal_basis"]

audit_data_cases := {
	"citizen reads the own access log": allows(
		ask(citizen, "read", own_access_log, for_audit),
		["own_record"],
	),
	"citizen does not read another's access log": denies(
		ask(citizen, "read", {"type": "AccessLog", "patient": other_patient}, for_audit),
		["no_legal_basis", "not_own_record"],
	),
	"citizen does not search decisions about the own record": denies(
		ask(citizen, "search", own_decisions, for_audit),
		auditor_only,
	),
	"citizen does not read a decision about the own record": denies(
		ask(citizen, "read", own_decisions, for_audit),
		auditor_only,
	),
	"citizen does not list reviews of accesses to the own record": denies(
		ask(citizen, "search", own_reviews, for_audit),
		auditor_only,
	),
	"a scope is no basis for decision records": denies(
		ask(audit_scoped, "search", own_decisions, for_audit),
		auditor_only,
	),
	"a scope is no basis for an access log": denies(
		ask(audit_scoped, "read", own_access_log, for_audit),
		auditor_only,
	),
	"a scope is no basis for a review outcome": denies(
		ask(audit_scoped, "write", {"type": "AccessReview", "patient": patient}, for_audit),
		auditor_only,
	),
	"a care relation is no basis for decision records": denies(
		ask(gp, "search", object.union(own_decisions, {"category": "general"}), {}),
		auditor_only,
	),
	"a sharing consent is no basis for decision records": denies(
		ask(nav, "search", object.union(own_decisions, {"category": "general"}), under_nav_consent),
		["auditor_only", "no_consent", "no_legal_basis"],
	),
	"the auditor still searches them": allows(
		ask(auditor, "search", own_decisions, for_audit),
		["auditor"],
	),
}

test_audit_data_cases if mismatches(audit_data_cases) == []

# --- system clients: change only what they recorded --------------------------------------

gp_result := object.union(typed("Observation", "lab_result"), {
	"author": gp.hpr_number,
	"existing": true,
})

lab_result := object.union(typed("Observation", "lab_result"), {
	"author": lab.id,
	"organisation": "974600951",
	"existing": true,
})

lab_org_result := object.union(typed("Observation", "lab_result"), {
	"author": "akson-dev-lab-2",
	"organisation": lab.organisation,
	"existing": true,
})

not_recorded := ["no_legal_basis", "not_recorded_by_client"]

ownership_cases := {
	"lab delivers a new result": allows(
		ask(lab, "write", object.union(typed("Observation", "lab_result"), {"author": lab.id}), {}),
		["system_scope"],
	),
	"lab corrects a result it recorded": allows(ask(lab, "write", lab_result, {}), ["system_scope"]),
	"lab corrects a result its organisation recorded": allows(
		ask(lab, "write", lab_org_result, {}),
		["system_scope"],
	),
	"lab does not invalidate a GP's result": denies(ask(lab, "write", gp_result, {}), not_recorded),
	"existing malformed counts as existing": denies(
		ask(lab, "write", object.union(gp_result, {"existing": "yes"}), {}),
		not_recorded,
	),
	"a client without id or organisation owns nothing": denies(
		ask(object.remove(lab, ["id", "organisation"]), "write", object.union(gp_result, {"author": null}), {}),
		not_recorded,
	),
	"a practitioner with a care relation still corrects a colleague's record": allows(
		ask(gp, "write", object.union(document, {"author": "someone-else", "existing": true}), {}),
		["care_relation"],
	),
}

test_ownership_cases if mismatches(ownership_cases) == []
