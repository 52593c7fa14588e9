# Welfare technology: device consent for assignments and device messages, table-driven.
package akson.authz_test

# the home-care nurse with a care relation with the patient (gp's unit and relation)
nurse := practitioner("SP")

# a registered welfare hub: delivers device messages, reads nothing
hub := {
	"id": "akson-dev-welfare-hub",
	"kind": "system",
	"organisation": "999000053",
	"roles": [],
	"scopes": ["DeviceMessage.write"],
}

device_consent(device) := directive({"kind": "device", "device": device})

welfare(type, device) := {
	"type": type,
	"patient": patient,
	"category": "welfare",
	"sensitivity": "normal",
	"id": device,
}

assignment := welfare("DeviceAssignment", "dispenser-1")

device_message := welfare("DeviceMessage", "dispenser-1")

consented := with_directives([device_consent("dispenser-1")])

no_device_consent_reasons := ["no_device_consent", "no_legal_basis"]

no_scope := ["missing_scope", "no_legal_basis"]

withdrawn_consent := object.union(device_consent("dispenser-1"), {"active": false})

other_patients_consent := object.union(device_consent("dispenser-1"), {"patient": other_patient})

welfare_cases := {
	"nurse assigns a consented device": allows(ask(nurse, "write", assignment, consented), ["care_relation"]),
	"nurse assigns without consent": denies(ask(nurse, "write", assignment, {}), no_device_consent_reasons),
	"consent for another device": denies(
		ask(nurse, "write", assignment, with_directives([device_consent("alarm-9")])),
		no_device_consent_reasons,
	),
	"withdrawn consent": denies(
		ask(nurse, "write", assignment, with_directives([withdrawn_consent])),
		no_device_consent_reasons,
	),
	"consent of another patient": denies(
		ask(nurse, "write", assignment, with_directives([other_patients_consent])),
		no_device_consent_reasons,
	),
	"a sharing consent is no device consent": denies(
		ask(nurse, "write", assignment, with_directives([nav_consent])),
		no_device_consent_reasons,
	),
	"no device named": denies(
		ask(nurse, "write", object.union(assignment, {"id": null}), consented),
		no_device_consent_reasons,
	),
	"nurse without a relation": denies(
		ask(nurse, "write", assignment, object.union(consented, {"care_relations": []})),
		["no_care_relation", "no_legal_basis"],
	),
	"nurse unassigns without consent": allows(
		ask(nurse, "write", welfare("Device", "dispenser-1"), {}),
		["care_relation"],
	),
	"nurse reads the registry": allows(ask(nurse, "search", welfare("Device", null), {}), ["care_relation"]),
	"hub delivers a consented device's message": allows(
		ask(hub, "write", device_message, consented),
		["system_scope"],
	),
	"hub delivers without consent": denies(ask(hub, "write", device_message, {}), no_device_consent_reasons),
	"hub reads a device": denies(ask(hub, "read", welfare("Device", "dispenser-1"), consented), no_scope),
	"hub reads an observation": denies(
		ask(hub, "read", typed("Observation", "welfare"), consented),
		no_scope,
	),
	"hub searches the registry": denies(ask(hub, "search", welfare("Device", null), {}), no_scope),
	"citizen reads own devices": allows(ask(citizen, "search", welfare("Device", null), {}), ["own_record"]),
	"a nurse is no device": denies(
		ask(nurse, "write", device_message, consented),
		["device_messages_from_systems_only", "no_legal_basis"],
	),
	"the citizen is no device": denies(
		ask(citizen, "write", device_message, consented),
		["action_not_allowed", "device_messages_from_systems_only", "no_legal_basis"],
	),
	"lab cannot deliver device messages": denies(
		ask(lab, "write", device_message, consented),
		no_scope,
	),
}

test_welfare_cases if mismatches(welfare_cases) == []
