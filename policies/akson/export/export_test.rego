package akson.export_test

import data.akson.export

# --- fixtures ------------------------------------------------------------------------

timesheet_line := {
	"employee_id": "1000001",
	"date": "2026-11-20",
	"unit": "999000029",
	"cost_centre": "CC-4601-29",
	"hours": 7.5,
	"line_kind": "normal",
	"visits": 5,
	"reference": "ts-abcdefghijklmnop",
}

order := {
	"order_id": "ord-abcdefghijklmnop",
	"unit": "999000029",
	"item": "bandage-10cm",
	"quantity": 40,
	"date": "2026-11-20",
}

payroll_header := {"format": "akson.timesheet.v1", "day": "2026-11-20", "unit": "999000029"}

logistics_header := {"format": "akson.replenishment-order.v1", "day": "2026-11-20", "unit": "999000029"}

payroll(records) := {
	"recipient": "payroll",
	"file_name": "payroll/2026-11-20/999000029/ts-abcdefghijklmnop.csv",
	"payload": {"header": payroll_header, "records": records},
}

logistics(records) := {
	"recipient": "logistics",
	"file_name": "logistics/2026-11-20/999000029/ord-abcdefghijklmnop.json",
	"payload": {"header": logistics_header, "records": records},
}

refused_with(decision, codes) if {
	decision.allow == false
	every code in {"payload_refused"} | codes {
		code in decision.reasons
	}
}

# --- allowed -------------------------------------------------------------------------

test_timesheet_with_only_entitled_fields_allowed if {
	reversal := object.union(timesheet_line, {"line_kind": "reversal", "hours": -2})
	decision := export.decision with input as payroll([timesheet_line, reversal])
	decision.allow
	decision.reasons == ["fields_allowed"]
	decision.violations == []
	decision.policy_version == "0.1.0"
}

test_order_with_only_entitled_fields_allowed if {
	decision := export.decision with input as logistics([order])
	decision.allow
	decision.reasons == ["fields_allowed"]
}

test_empty_records_allowed if {
	export.allow with input as payroll([])
}

# --- patient identifiers -------------------------------------------------------------

test_national_id_in_a_unit_refused if {
	line := object.union(timesheet_line, {"unit": "17058012345"})
	decision := export.decision with input as payroll([line])
	refused_with(decision, {"national_id_in_value"})
	{"path": "payload/records/0/unit", "code": "national_id_in_value"} in decision.violations
}

test_national_id_inside_an_item_code_refused if {
	line := object.union(order, {"item": "bandage-17058012345"})
	decision := export.decision with input as logistics([line])
	refused_with(decision, {"national_id_in_value"})
}

test_split_national_id_refused if {
	line := object.union(order, {"item": "170580 12345"})
	refused_with(export.decision, {"national_id_in_value", "value_not_allowed"}) with input as logistics([line])
}

test_national_id_as_a_number_refused if {
	line := object.union(order, {"quantity": 17058012345})
	refused_with(export.decision, {"national_id_in_value"}) with input as logistics([line])
}

test_national_id_in_the_file_name_refused if {
	request := object.union(payroll([timesheet_line]), {"file_name": "payroll/2026-11-20/17058012345/x.csv"})
	decision := export.decision with input as request
	refused_with(decision, {"national_id_in_value"})
	{"path": "file_name", "code": "national_id_in_value"} in decision.violations
}

test_national_id_as_a_configured_cost_centre_refused if {
	line := object.union(timesheet_line, {"cost_centre": "17058012345"})
	decision := export.decision with input as payroll([line])
	refused_with(decision, {"national_id_in_value"})
	{"path": "payload/records/0/cost_centre", "code": "national_id_in_value"} in decision.violations
}

test_longer_digit_runs_are_not_national_ids if {
	line := object.union(timesheet_line, {"cost_centre": "123456789012"})
	decision := export.decision with input as payroll([line])
	decision.allow
}

test_an_organisation_number_is_not_a_national_id if {
	export.allow with input as payroll([object.union(timesheet_line, {"unit": "974760673"})])
}

# --- forbidden fields and diagnoses --------------------------------------------------

test_patient_field_refused if {
	line := object.union(timesheet_line, {"patient": "x"})
	decision := export.decision with input as payroll([line])
	refused_with(decision, {"forbidden_field", "field_not_allowed"})
}

test_note_nested_in_a_value_refused if {
	line := object.union(order, {"item": {"Note": "sår på venstre legg"}})
	decision := export.decision with input as logistics([line])
	refused_with(decision, {"forbidden_field", "value_not_allowed"})
}

test_diagnosis_field_in_the_header_refused if {
	request := payroll([timesheet_line])
	header := object.union(payroll_header, {"diagnosis": "J45"})
	decision := export.decision with input as object.union(request, {"payload": {"header": header, "records": []}})
	refused_with(decision, {"forbidden_field", "field_not_allowed", "diagnosis_code_in_value"})
}

test_diagnosis_code_as_a_value_refused if {
	line := object.union(order, {"item": "F32.1"})
	decision := export.decision with input as logistics([line])
	refused_with(decision, {"diagnosis_code_in_value"})
	{"path": "payload/records/0/item", "code": "diagnosis_code_in_value"} in decision.violations
}

# --- field allow-list per recipient --------------------------------------------------

test_a_field_of_another_recipient_refused if {
	line := object.union(order, {"employee_id": "1000001"})
	decision := export.decision with input as logistics([line])
	refused_with(decision, {"field_not_allowed"})
	{"path": "payload/records/0/employee_id", "code": "field_not_allowed"} in decision.violations
}

test_free_text_in_an_allowed_field_refused if {
	line := object.union(timesheet_line, {"cost_centre": "visit to the patient at home"})
	refused_with(export.decision, {"value_not_allowed"}) with input as payroll([line])
}

test_a_number_field_with_a_string_refused if {
	line := object.union(timesheet_line, {"hours": "7.5"})
	refused_with(export.decision, {"value_not_allowed"}) with input as payroll([line])
}

test_an_unknown_header_field_refused if {
	header := object.union(payroll_header, {"municipality": "4601"})
	request := {"recipient": "payroll", "file_name": "f.csv", "payload": {"header": header, "records": []}}
	decision := export.decision with input as request
	refused_with(decision, {"field_not_allowed"})
	{"path": "payload/header/municipality", "code": "field_not_allowed"} in decision.violations
}

# --- fails closed --------------------------------------------------------------------

test_unknown_recipient_refused if {
	request := object.union(payroll([timesheet_line]), {"recipient": "economy"})
	refused_with(export.decision, {"unknown_recipient"}) with input as request
}

test_recipient_not_a_string_refused if {
	request := object.union(payroll([timesheet_line]), {"recipient": ["payroll"]})
	refused_with(export.decision, {"unknown_recipient"}) with input as request
}

test_records_not_objects_refused if {
	refused_with(export.decision, {"malformed_payload"}) with input as payroll(["1000001,2026-11-20"])
}

test_missing_payload_refused if {
	decision := export.decision with input as {"recipient": "payroll", "file_name": "f.csv"}
	refused_with(decision, {"malformed_payload"})
}

test_no_input_refused if {
	decision := export.decision with input as {}
	refused_with(decision, {"malformed_payload", "unknown_recipient"})
	decision.violations == []
}

test_missing_file_name_refused if {
	request := json.remove(payroll([timesheet_line]), ["file_name"])
	refused_with(export.decision, {"malformed_payload"}) with input as request
}

test_missing_policy_version_is_unknown if {
	# regal ignore:unresolved-reference
	decision := export.decision with input as payroll([]) with export.policy_version as ""
	decision.policy_version == "unknown"
}
