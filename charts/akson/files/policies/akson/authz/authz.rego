# METADATA
# title: Akson access control
# description: |
#   Decides whether a subject (practitioner, citizen or system client) may
#   read, search or write a patient resource. Data tables (allowed actions per
#   subject kind, purposes, professions and sensitivity per category, emergency
#   codes, policy version) live in data.json next to this file and are loaded
#   under data.akson.authz.
#   A request is allowed when a grant (legal basis) matches and no override
#   (the patient's block or reservation) applies, or, failing that, as an
#   emergency (break-glass) access, which overrides blocks and reservations.
#   Fails closed: missing or malformed input yields a deny, never an error.
package akson.authz

# Subject kinds this policy knows how to evaluate.
_subject_kinds := {"practitioner", "citizen", "system"}

# Actions that only look at data (no write).
_read_actions := {"read", "search"}

# METADATA
# title: Access decision
# description: |
#   The decision document returned to callers. Always defined:
#   allow (bool), reasons (sorted list of stable codes), obligations
#   (sorted list of stable codes the enforcement point must honour, e.g.
#   reveal_address, mask_address; empty on deny) and policy_version (from data).
# entrypoint: true
decision := {
	"allow": allow,
	"reasons": reasons,
	"obligations": _decision_obligations,
	"policy_version": _policy_version,
}

# METADATA
# title: Allow
# description: |
#   True only if a grant matches and no block or reservation applies, or if
#   an emergency (break-glass) access is granted. Deny is the default.
# scope: document
default allow := false

allow if _normal_allow

allow if _emergency_granted

# METADATA
# title: Reasons
# description: |
#   Sorted, stable reason codes. On allow: the grounds for access
#   (care_relation, own_record, system_scope, sharing_consent, directory,
#   auditor, or emergency with directive_overridden when it beat a directive).
#   On deny: no_legal_basis plus every specific reason that applies.
reasons := sort(_allow_reasons) if {
	allow
} else := sort(_denials)

default _decision_obligations := []

_decision_obligations := sort(_obligations) if allow

default _policy_version := "unknown"

_policy_version := _tables_version if _nonempty_string(_tables_version)

# --- data tables (akson/authz/data.json, loaded as data.akson.authz) ----------
# Regal does not read data files, so it reports these references as
# unresolved. All table access goes through these rules so the lint
# exception stays in one place.

# regal ignore:unresolved-reference
_tables_version := data.akson.authz.policy_version

# regal ignore:unresolved-reference
_tables_actions := data.akson.authz.actions

# regal ignore:unresolved-reference
_tables_purposes := data.akson.authz.purposes

# regal ignore:unresolved-reference
_tables_categories := data.akson.authz.categories

# regal ignore:unresolved-reference
_tables_directory_types := data.akson.authz.directory_types

# regal ignore:unresolved-reference
_tables_citizen_writable_types := data.akson.authz.citizen_writable_types

# regal ignore:unresolved-reference
_tables_audit_types := data.akson.authz.audit_types

# regal ignore:unresolved-reference
_tables_auditor_writable_types := data.akson.authz.auditor_writable_types

# regal ignore:unresolved-reference
_tables_citizen_audit_types := data.akson.authz.citizen_audit_types

# regal ignore:unresolved-reference
_tables_emergency := data.akson.authz.emergency

# regal ignore:unresolved-reference
_tables_admin_types := data.akson.authz.admin_types

# --- outcome -------------------------------------------------------------------------
# A normal grant stands unless the patient's block or reservation overrides it.

_normal_allow if {
	count(_grants) > 0
	count(_overrides) == 0
	not _directives_malformed
	_within_granted_scopes
}

_grants contains "care_relation" if _practitioner_granted

_grants contains "directory" if _directory_granted

_grants contains "own_record" if _citizen_granted

_grants contains "system_scope" if _system_granted

_grants contains "sharing_consent" if _sharing_consent_granted

_grants contains "auditor" if _auditor_granted

_grants contains "app_admin" if _app_admin_granted

_overrides contains "blocked" if _blocked

_overrides contains "reserved" if _reserved

_allow_reasons contains code if {
	_normal_allow
	some code in _grants
}

_allow_reasons contains "emergency" if _emergency_granted

_allow_reasons contains "directive_overridden" if {
	_emergency_granted
	count(_overrides) > 0
}

# --- subject -----------------------------------------------------------------

_kind := input.subject.kind if input.subject.kind in _subject_kinds

_is_practitioner if _kind == "practitioner"

_is_citizen if _kind == "citizen"

_is_system if _kind == "system"

_action_supported if input.action in _tables_actions[_kind]

# A citizen may also write the types in citizen_writable_types (their consent directives).
_action_supported if {
	_is_citizen
	input.action == "write"
	input.resource.type in _tables_citizen_writable_types
}

# --- resource ------------------------------------------------------------------

_category := _tables_categories[input.resource.category]

# Sensitive: the category says so, or the resource is marked sensitive. Any sensitivity
# other than "normal" counts as sensitive (fails closed); a missing one is "normal".
_sensitive if _category.sensitive == true

_sensitive if input.resource.sensitivity != "normal"

_withheld_from_patient if input.resource.withheld_from_patient == true

_withheld_from_patient if {
	withheld := input.resource.withheld_from_patient
	not is_boolean(withheld)
}

# --- practitioner: care relation + profession per category + purpose ----------

_practitioner_granted if {
	_is_practitioner
	_action_supported
	_open_to_non_auditors
	_purpose_allowed
	_has_care_relation
	_profession_allowed
	_sensitive_condition_met
}

_purpose_allowed if input.context.purpose in _tables_purposes.practitioner

# care relations in any other shape than a list count as none (fails closed)
_care_relations := input.context.care_relations if is_array(input.context.care_relations)

_has_care_relation if {
	some relation in _care_relations
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

_profession_allowed if input.subject.profession in _category.professions

# Sensitive data stays in the unit: the care relation is with the subject's own unit and the
# resource was recorded there (for a write the service sets resource.unit to the writer's).
_sensitive_condition_met if not _sensitive

_sensitive_condition_met if {
	_has_same_unit_relation
	_resource_in_own_unit
}

_has_same_unit_relation if {
	_nonempty_string(input.subject.unit)
	some relation in _care_relations
	_relation_covers_subject(relation)
	relation.unit == input.subject.unit
}

_resource_in_own_unit if {
	_nonempty_string(input.subject.unit)
	input.resource.unit == input.subject.unit
}

# --- practitioner: directory data (who works where), not health data ----------

_directory_granted if {
	_is_practitioner
	input.action in _read_actions
	input.resource.type in _tables_directory_types
}

# --- citizen: own record (read/search; write only citizen_writable_types) -------

_citizen_granted if {
	_is_citizen
	_action_supported
	_own_record
	not _withheld_from_patient
	_open_to_non_auditors
}

_own_record if {
	_nonempty_string(input.subject.id)
	input.subject.id == input.resource.patient
}

_citizen_self if {
	_is_citizen
	_own_record
}

# --- system client: scope "<resource type>.<action>" ---------------------------
# Not for the sharing purposes (nav, child_welfare): those need the citizen's consent.

_system_granted if {
	_is_system
	_action_supported
	not _sharing_purpose
	_has_required_scope
	_open_to_non_auditors
	not _changes_others_record
}

_required_scope := concat(".", [input.resource.type, input.action]) if {
	_nonempty_string(input.resource.type)
	_nonempty_string(input.action)
}

_has_required_scope if {
	is_array(input.subject.scopes)
	_required_scope in input.subject.scopes
}

# A scope lets a client deliver new records; changing or invalidating one that exists
# (resource.existing) needs the record to be the client's own: recorded by it (author) or by
# its organisation. Anything but a boolean in resource.existing counts as existing (fails closed).
_changes_others_record if {
	input.action == "write"
	_changes_existing
	not _recorded_by_subject
}

_changes_existing if input.resource.existing == true

_changes_existing if {
	existing := input.resource.existing
	not is_boolean(existing)
}

_recorded_by_subject if {
	_nonempty_string(input.subject.id)
	input.resource.author == input.subject.id
}

_recorded_by_subject if {
	_nonempty_string(input.subject.organisation)
	input.resource.organisation == input.subject.organisation
}

# --- system client for NAV / child welfare: the citizen's sharing consent -----------

_sharing_purpose if input.context.purpose in _tables_purposes.sharing_consent

_sharing_consent_granted if {
	_is_system
	_action_supported
	input.action in _read_actions
	_sharing_purpose
	_open_to_non_auditors
	_nonempty_string(input.subject.organisation)
	_nonempty_string(input.resource.category)
	some directive in _directives
	directive.kind == "consent"
	directive.recipient_organisation == input.subject.organisation
	directive.purpose == input.context.purpose
	is_array(directive.categories)
	input.resource.category in directive.categories
}

# --- audit data is for auditors -----------------------------------------------------
# Decision records and everything derived from them (exports, gaps, signals, reviews) are
# the auditor's alone, whatever other basis would match (own record, scope, care relation);
# the one exception is the citizen's own access log (citizen_audit_types).

_audit_data if input.resource.type in _tables_audit_types

# the app registry is as closed as audit data: its admins' alone (below)
_audit_data if input.resource.type in _tables_admin_types

_open_to_non_auditors if not _audit_data

_open_to_non_auditors if {
	_is_citizen
	input.resource.type in _tables_citizen_audit_types
}

# --- auditor: audit data only, never clinical types ---------------------------------

_auditor_granted if {
	_is_auditor
	input.action in _read_actions
	input.resource.type in _tables_audit_types
}

# An auditor writes one thing: the outcome of a review (e.g. of an emergency access), never
# the log itself.
_auditor_granted if {
	_is_auditor
	input.action == "write"
	input.resource.type in _tables_auditor_writable_types
}

_is_auditor if {
	_kind
	is_array(input.subject.roles)
	"auditor" in input.subject.roles
}

# --- app registry admin: the registry only, never health or audit data -------------

_app_admin_granted if {
	_kind
	is_array(input.subject.roles)
	"admin" in input.subject.roles
	input.resource.type in _tables_admin_types
	input.action in {"read", "search", "write"}
	input.context.purpose == "administration"
}

# --- helpers -----------------------------------------------------------------------

_nonempty_string(value) if {
	is_string(value)
	value != ""
}

_nonempty_array(value) if {
	is_array(value)
	count(value) > 0
}
