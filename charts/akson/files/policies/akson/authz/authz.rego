# METADATA
# title: Akson access control
# description: |
#   Decides whether a subject (practitioner, citizen or system client) may
#   read, search or write a patient resource. Data tables (allowed actions per
#   subject kind, professions per category, policy version) live in data.json
#   next to this file and are loaded under data.akson.authz.
#   Fails closed: missing or malformed input yields a deny, never an error.
package akson.authz

# Subject kinds this policy knows how to evaluate.
_subject_kinds := {"practitioner", "citizen", "system"}

# METADATA
# title: Access decision
# description: |
#   The decision document returned to callers. Always defined:
#   allow (bool), reasons (sorted list of stable codes), obligations
#   (sorted list of stable codes the enforcement point must honour, e.g.
#   reveal_address) and policy_version (from data).
# entrypoint: true
decision := {
	"allow": allow,
	"reasons": reasons,
	"obligations": sort(_obligations),
	"policy_version": _policy_version,
}

# METADATA
# title: Allow
# description: True only if one of the grant rules matches. Deny is the default.
# scope: document
default allow := false

allow if _practitioner_granted

allow if _directory_granted

allow if _citizen_granted

allow if _system_granted

# METADATA
# title: Reasons
# description: |
#   Sorted, stable reason codes. On allow: the grounds for access
#   (care_relation, own_record, system_scope). On deny: no_legal_basis plus
#   every specific reason that applies.
reasons := sort(_grants) if {
	allow
} else := sort(_denials)

default _policy_version := "unknown"

_policy_version := _tables_version if _nonempty_string(_tables_version)

# --- data tables (akson/authz/data.json, loaded as data.akson.authz) ----------
# Regal does not read data files, so it reports these references as
# unresolved. All table access goes through these three rules so the lint
# exception stays in one place.

# regal ignore:unresolved-reference
_tables_version := data.akson.authz.policy_version

# regal ignore:unresolved-reference
_tables_actions := data.akson.authz.actions

# regal ignore:unresolved-reference
_tables_categories := data.akson.authz.categories

# regal ignore:unresolved-reference
_tables_directory_types := data.akson.authz.directory_types

# --- subject -----------------------------------------------------------------

_kind := input.subject.kind if input.subject.kind in _subject_kinds

_is_practitioner if _kind == "practitioner"

_is_citizen if _kind == "citizen"

_is_system if _kind == "system"

_action_supported if input.action in _tables_actions[_kind]

# --- practitioner: care relation + profession per category ---------------------

_practitioner_granted if {
	_is_practitioner
	_action_supported
	_has_care_relation
	_profession_allowed
}

_has_care_relation if {
	some relation in input.context.care_relations
	_relation_covers_subject(relation)
}

_relation_covers_subject(relation) if {
	relation.active == true
	_nonempty_string(relation.patient)
	relation.patient == input.resource.patient
	_same_practitioner_or_unit(relation)
}

_same_practitioner_or_unit(relation) if {
	_nonempty_string(input.subject.hpr_number)
	relation.practitioner == input.subject.hpr_number
}

_same_practitioner_or_unit(relation) if {
	_nonempty_string(input.subject.unit)
	relation.unit == input.subject.unit
}

_category := _tables_categories[input.resource.category]

_profession_allowed if input.subject.profession in _category.professions

# --- practitioner: directory data (who works where), not health data ----------

_directory_granted if {
	_is_practitioner
	input.action in {"read", "search"}
	input.resource.type in _tables_directory_types
}

# --- citizen: own record, read-only --------------------------------------------

_citizen_granted if {
	_is_citizen
	_action_supported
	_own_record
}

_own_record if {
	_nonempty_string(input.subject.id)
	input.subject.id == input.resource.patient
}

# --- system client: scope "<resource type>.<action>" ---------------------------

_system_granted if {
	_is_system
	_action_supported
	_has_required_scope
}

_required_scope := concat(".", [input.resource.type, input.action]) if {
	_nonempty_string(input.resource.type)
	_nonempty_string(input.action)
}

_has_required_scope if {
	is_array(input.subject.scopes)
	_required_scope in input.subject.scopes
}

# --- reason codes ----------------------------------------------------------------

_grants contains "care_relation" if _practitioner_granted

_grants contains "directory" if _directory_granted

_grants contains "own_record" if _citizen_granted

_grants contains "system_scope" if _system_granted

# Every deny carries the umbrella code; the rules below add the specifics.
_denials contains "no_legal_basis"

_denials contains "unknown_subject_kind" if not _kind

_denials contains "action_not_allowed" if {
	_kind
	not _action_supported
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

_denials contains "not_own_record" if {
	_is_citizen
	not _own_record
}

_denials contains "missing_scope" if {
	_is_system
	not _has_required_scope
}

# --- obligations -------------------------------------------------------------------
# A protected address (fortrolig / strengt fortrolig) is masked by the service unless the
# decision carries reveal_address: the citizen's own record, or a system client holding the
# explicit Patient.address scope (e.g. the population register itself).

_obligations contains "reveal_address" if {
	_citizen_granted
	input.resource.type == "Patient"
}

_obligations contains "reveal_address" if {
	_system_granted
	input.resource.type == "Patient"
	"Patient.address" in input.subject.scopes
}

# --- helpers -----------------------------------------------------------------------

_nonempty_string(value) if {
	is_string(value)
	value != ""
}
