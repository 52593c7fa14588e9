# Reason codes on deny and the obligations of an allowing decision.
# Part of package akson.authz; the codes are stable and listed in policies/README.md.
package akson.authz

# --- deny reason codes ---------------------------------------------------------------

# Every deny carries the umbrella code; the rules below add the specifics.
_denials contains "no_legal_basis"

_denials contains code if some code in _overrides

_denials contains "unknown_subject_kind" if not _kind

_denials contains "invalid_directives" if _directives_malformed

_denials contains "action_not_allowed" if {
	_kind
	not _action_supported
}

_denials contains "purpose_not_allowed" if {
	_is_practitioner
	not _purpose_allowed
}

_denials contains "no_care_relation" if {
	_is_practitioner
	not _has_care_relation
}

_denials contains "unknown_category" if {
	_is_practitioner
	not _category
}

_denials contains "profession_not_allowed" if {
	_is_practitioner
	_category
	not _profession_allowed
}

_denials contains "sensitive_requires_same_unit" if {
	_is_practitioner
	not _sensitive_condition_met
}

_denials contains "not_own_record" if {
	_is_citizen
	not _own_record
}

_denials contains "withheld_from_patient" if {
	_citizen_self
	_withheld_from_patient
}

_denials contains "auditor_only" if {
	not _open_to_non_auditors
	not _is_auditor
	not input.resource.type in _tables_admin_types
}

_denials contains "admin_only" if {
	input.resource.type in _tables_admin_types
	not _app_admin_granted
}

_denials contains "not_recorded_by_client" if {
	_is_system
	_changes_others_record
}

_denials contains "missing_scope" if {
	_is_system
	not _sharing_purpose
	not _has_required_scope
}

_denials contains "no_consent" if {
	_sharing_purpose
	not _sharing_consent_granted
}

_denials contains "emergency_reason_invalid" if {
	_emergency_reason_given
	not _emergency_reason_valid
}

_denials contains "emergency_not_allowed" if {
	_emergency_reason_valid
	not _emergency_eligible
}

# --- obligations -------------------------------------------------------------------
# A protected address (fortrolig / strengt fortrolig) is masked by the service unless the
# decision carries reveal_address: the citizen's own record, or a system client holding the
# explicit Patient.address scope (e.g. the population register itself). When the service
# knows the patient has a protected address, mask_address says so explicitly.

_obligations contains "reveal_address" if _reveal_address

_obligations contains "mask_address" if {
	_protected_address
	not _reveal_address
}

_obligations contains "notify_patient" if _emergency_granted

_obligations contains "review_emergency_access" if _emergency_granted

_reveal_address if {
	_normal_allow
	_citizen_granted
	input.resource.type == "Patient"
}

_reveal_address if {
	_normal_allow
	_system_granted
	input.resource.type == "Patient"
	"Patient.address" in input.subject.scopes
}

# true, or anything that is not a boolean (fails closed); false or absent: not protected
_protected_address if input.context.patient.protected_address == true

_protected_address if {
	protected := input.context.patient.protected_address
	not is_boolean(protected)
}
