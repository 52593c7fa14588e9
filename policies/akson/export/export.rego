# METADATA
# title: Akson export minimisation
# description: |
#   Decides whether an outbound payload (a payroll timesheet file, a logistics
#   order file) may leave the platform for its recipient system. Only the
#   fields the recipient is entitled to (data.json, per recipient: header and
#   record fields, each with a value shape) may appear; no patient identifier
#   (any 11-digit national-id-like number, in any value or the file name), no
#   diagnosis code and no field named like patient, diagnosis or note data, at
#   any depth. Fails closed: an unknown recipient or a malformed payload is
#   refused, never an error.
package akson.export

# METADATA
# title: Export decision
# description: |
#   Always defined: allow (bool), reasons (sorted stable codes: fields_allowed
#   on allow; payload_refused plus every specific code on deny), violations
#   (sorted, each {"path", "code"}: where in the input the problem is, never the
#   value) and policy_version (from data).
# entrypoint: true
decision := {
	"allow": allow,
	"reasons": reasons,
	"violations": sort(_violations),
	"policy_version": _policy_version,
}

# METADATA
# title: Allow
# description: True only for a known recipient, a well-formed payload and no violation.
# scope: document
default allow := false

allow if {
	_recipient
	_well_formed
	count(_violations) == 0
}

# METADATA
# title: Reasons
# description: Sorted stable codes (see policies/README.md).
reasons := ["fields_allowed"] if {
	allow
} else := sort(_denials)

default _policy_version := "unknown"

_policy_version := _tables_version if {
	is_string(_tables_version)
	_tables_version != ""
}

# --- data tables (akson/export/data.json, loaded as data.akson.export) ---------------

# regal ignore:unresolved-reference
_tables_version := data.akson.export.policy_version

# regal ignore:unresolved-reference
_tables_recipients := data.akson.export.recipients

# regal ignore:unresolved-reference
_tables_forbidden_fields := data.akson.export.forbidden_fields

# --- input shape ---------------------------------------------------------------------

_recipient := _tables_recipients[input.recipient] if is_string(input.recipient)

_header := input.payload.header if is_object(input.payload.header)

_records := input.payload.records if is_array(input.payload.records)

_well_formed if {
	is_string(input.file_name)
	_header
	_records
	every record in _records {
		is_object(record)
	}
}

# --- patterns ------------------------------------------------------------------------

# Eleven digits, optionally split 6+5 by a space or dash, not part of a longer number:
# a national identity number, D-number, H-number or synthetic test number. Control digits
# are not checked on purpose (fails closed: anything shaped like one is refused).
_national_id_pattern := `(^|[^0-9])[0-9]{6}[ -]?[0-9]{5}([^0-9]|$)`

# ICD-10 (A00-Z99 with an optional subdivision) and ICPC-2 (letter + two digits) codes.
_diagnosis_pattern := `^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$`

_text(value) := value if is_string(value)

_text(value) := sprintf("%v", [value]) if is_number(value)

# a path in the input as "payload/records/0/unit"
_location(path) := concat("/", [sprintf("%v", [step]) | some step in path])

# --- violations (path + code, never the value) ---------------------------------------

_violations contains {"path": _location(path), "code": "national_id_in_value"} if {
	walk(input, [path, value])
	regex.match(_national_id_pattern, _text(value))
}

_violations contains {"path": _location(array.concat(["payload"], path)), "code": "diagnosis_code_in_value"} if {
	walk(input.payload, [path, value])
	regex.match(_diagnosis_pattern, _text(value))
}

_violations contains {"path": _location(array.concat(["payload"], path)), "code": "forbidden_field"} if {
	walk(input.payload, [path, _])
	count(path) > 0
	key := path[count(path) - 1]
	is_string(key)
	lower(key) in _tables_forbidden_fields
}

_violations contains {"path": concat("/", ["payload", "header", key]), "code": code} if {
	some key, value in _header
	some code in _field_problems(_recipient.header, key, value)
}

_violations contains {"path": concat("/", ["payload", "records", format_int(i, 10), key]), "code": code} if {
	some i, record in _records
	is_object(record)
	some key, value in record
	some code in _field_problems(_recipient.fields, key, value)
}

_field_problems(specs, key, _) := {"field_not_allowed"} if not specs[key]

_field_problems(specs, key, value) := {"value_not_allowed"} if {
	specs[key]
	not _value_fits(specs[key], value)
}

_value_fits(spec, value) if {
	spec.type == "string"
	is_string(value)
	regex.match(spec.pattern, value)
}

_value_fits(spec, value) if {
	spec.type == "number"
	is_number(value)
}

# --- deny reasons --------------------------------------------------------------------

# Every refusal carries the umbrella code; the rules below add the specifics.
_denials contains "payload_refused"

_denials contains "unknown_recipient" if not _recipient

_denials contains "malformed_payload" if not _well_formed

_denials contains violation.code if some violation in _violations
