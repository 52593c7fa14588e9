# The patient's directives (blocks, reservations: overrides of the grants in authz.rego)
# and emergency access (break-glass), which overrides them. Part of package akson.authz.
package akson.authz

# --- the patient's directives: blocks and reservations (overrides) -------------------
# Only active directives about this patient count.

# Directives that cannot be read (not a list, or an entry that is not an object) could hide a
# block: nothing is allowed then, not even an emergency access (fails closed). Absent: none.
_directives_malformed if {
	directives := input.context.directives
	not is_array(directives)
}

_directives_malformed if {
	some directive in input.context.directives
	not is_object(directive)
}

_directives contains directive if {
	some directive in input.context.directives
	directive.active == true
	_nonempty_string(directive.patient)
	directive.patient == input.resource.patient
}

# A block names the practitioner (HPR number), their unit or their organisation.
_blocked if {
	_is_practitioner
	some directive in _directives
	directive.kind == "block"
	_block_names_subject(directive)
}

_block_names_subject(directive) if {
	_nonempty_string(input.subject.hpr_number)
	directive.practitioner == input.subject.hpr_number
}

_block_names_subject(directive) if {
	_nonempty_string(input.subject.unit)
	directive.unit == input.subject.unit
}

_block_names_subject(directive) if {
	_nonempty_string(input.subject.organisation)
	directive.organisation == input.subject.organisation
}

# A reservation keeps its categories (none listed: every category) from its scope.
# The citizen's own access is never limited by their own directives.
_reserved if {
	not _citizen_self
	_outside_home_municipality
	some directive in _reservations
	directive.scope == "other_municipalities"
}

_reserved if {
	not _citizen_self
	some directive in _reservations
	directive.scope in _tables_purposes.sharing_consent
	directive.scope == input.context.purpose
}

# The reservations that cover the resource's category.
_reservations contains directive if {
	some directive in _directives
	directive.kind == "reservation"
	_reservation_covers_category(directive)
}

_reservation_covers_category(directive) if not _nonempty_array(directive.categories)

_reservation_covers_category(directive) if input.resource.category in directive.categories

# A practitioner reading data recorded in another municipality than their own.
_outside_home_municipality if {
	_is_practitioner
	input.action in _read_actions
	_nonempty_string(input.subject.municipality)
	_nonempty_string(input.resource.municipality)
	input.subject.municipality != input.resource.municipality
}

# --- emergency (break-glass, nødrett) ------------------------------------------------
# Only when no normal grant stands; overrides blocks and reservations, never the
# sensitive categories. Coded reason required.

_emergency_granted if {
	not _normal_allow
	not _directives_malformed
	_emergency_reason_valid
	_emergency_eligible
	_within_granted_scopes
}

_emergency_reason_given if input.context.emergency_reason != null

_emergency_reason_valid if {
	_nonempty_string(input.context.emergency_reason)
	_tables_emergency.reasons[input.context.emergency_reason]
}

_emergency_eligible if {
	_is_practitioner
	_action_supported
	input.action in _read_actions
	_purpose_allowed
	_nonempty_string(input.resource.patient)
	input.subject.profession in _tables_emergency.professions
	input.resource.category in _tables_emergency.categories
	not _sensitive
}
