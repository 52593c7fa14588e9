package system.log_test

import data.system.log

event := {
	"decision_id": "4ca636c1-55e4-417a-b1d8-4aceb67960d1",
	"path": "akson/authz/decision",
	"input": {
		"subject": {"id": "prac-1", "kind": "practitioner"},
		"action": "read",
		"resource": {
			"type": "DocumentReference",
			"patient": "12345678901",
			"content": {"data": "clinical"},
			"text": "clinical narrative",
		},
		"context": {"care_relations": [], "note": "free-text clinical note"},
	},
	"result": {"allow": true, "reasons": ["care_relation"]},
}

clinical_paths := {
	"/input/resource/content", "/input/resource/text", "/input/context/note",
	"/input/payload", "/input/file_name",
}

test_mask_clinical_content_erased if {
	masked := log.mask with input as event
	masked == clinical_paths
}

test_mask_only_removes_never_upserts if {
	masked := log.mask with input as event
	every pointer in masked {
		is_string(pointer)
	}
}

test_mask_input_without_content_still_erased if {
	# OPA ignores pointers to undefined fields, so unconditional masks are safe.
	masked := log.mask with input as {"input": {"subject": {"kind": "citizen"}}}
	masked == clinical_paths
}

test_mask_applied_to_event_removes_content if {
	masked := log.mask with input as event
	cleaned := json.remove(event, masked)
	not cleaned.input.resource.content
	not cleaned.input.resource.text
	not cleaned.input.context.note
	cleaned.input.resource.patient == "12345678901"
	cleaned.input.context.care_relations == []
	cleaned.result == event.result
}
