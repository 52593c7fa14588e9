# SMART v2 scopes only narrow (part of package akson.authz).
# A token carrying SMART App Launch v2 resource scopes (patient/, user/,
# system/ <type>.<cruds>) may only be used for what one of them covers: the
# resource type (or *), the action's permission (read r, search s, write of
# a new record c, of an existing one u) and the context (patient/: the
# launch patient's record only; user/: a person's token; system/: a system
# client's). Every other condition of the policy still applies: a scope
# never grants what the care relation (or own record, or consent) does not.
# Tokens without SMART scopes (token exchange, the platform's system
# clients' "<type>.<action>" scopes) are not narrowed.
package akson.authz

_smart_scope_pattern := `^(patient|user|system)/([A-Z][A-Za-z]*|\*)\.c?r?u?d?s?$`

_subject_scopes := input.subject.scopes if is_array(input.subject.scopes)

_smart_scopes contains scope if {
	some text in _subject_scopes
	is_string(text)
	regex.match(_smart_scope_pattern, text)
	parts := split(text, "/")
	resource := split(parts[1], ".")
	scope := {"context": parts[0], "type": resource[0], "permissions": resource[1]}
}

# the token carries SMART scopes: only they may be used
_narrowed_by_scopes if count(_smart_scopes) > 0

# a person's token issued to an app (SMART App Launch) is narrowed even when it carries no
# resource scope (only openid fhirUser, say): then it reaches no record
_narrowed_by_scopes if {
	_nonempty_string(input.subject.app)
	_kind in {"practitioner", "citizen"}
}

_scope_permission := "r" if input.action == "read"

_scope_permission := "s" if input.action == "search"

_scope_permission := "u" if {
	input.action == "write"
	_changes_existing
}

_scope_permission := "c" if {
	input.action == "write"
	not _changes_existing
}

_within_granted_scopes if not _narrowed_by_scopes

_within_granted_scopes if {
	some scope in _smart_scopes
	_scope_covers(scope)
}

_scope_covers(scope) if {
	scope.type in {"*", input.resource.type}
	contains(scope.permissions, _scope_permission)
	_scope_context_holds(scope)
}

_scope_context_holds(scope) if {
	scope.context == "user"
	_kind in {"practitioner", "citizen"}
}

_scope_context_holds(scope) if {
	scope.context == "system"
	_is_system
}

# patient/: the launch patient's record only (the launch context the token carries)
_scope_context_holds(scope) if {
	scope.context == "patient"
	_kind in {"practitioner", "citizen"}
	_nonempty_string(input.subject.launch_patient)
	input.resource.patient == input.subject.launch_patient
}

# SMART Backend Services: a system/ scope stands for the platform's "<type>.<action>"
_has_required_scope if {
	some scope in _smart_scopes
	scope.context == "system"
	_scope_covers(scope)
}

_denials contains "outside_granted_scopes" if not _within_granted_scopes
