# The patient's directives as overrides: blocks and reservations, table-driven.
package akson.authz_test

import data.akson.authz

# --- block ----------------------------------------------------------------------------------

test_block_cases if {
	by_hpr := block({"practitioner": "1000001"})
	blocked := {"allow": false, "reasons": ["blocked", "no_legal_basis"]}
	mismatches({
		"block of the practitioner": object.union(blocked, {"input": ask(gp, "read", document, {"directives": [by_hpr]})}),
		"block of the unit": object.union(blocked, {"input": ask(gp, "search", document, {
			"directives": [block({"unit": "unit-gp-1"})],
		})}),
		"block of the organisation": object.union(blocked, {"input": ask(gp, "read", document, {
			"directives": [block({"organisation": "974600951"})],
		})}),
		"block holds for writes": object.union(blocked, {"input": ask(gp, "write", document, {"directives": [by_hpr]})}),
		"block holds for demographics": object.union(blocked, {"input": ask(gp, "read", doc("demographics"), {
			"directives": [by_hpr],
		})}),
		"a block among other directives": object.union(blocked, {"input": ask(gp, "read", document, {
			"directives": [nav_consent, block({"practitioner": "2000002"}), by_hpr],
		})}),
		"block and no relation": {
			"input": ask(gp, "read", document, {"directives": [by_hpr], "care_relations": []}),
			"allow": false, "reasons": ["blocked", "no_care_relation", "no_legal_basis"],
		},
		"inactive block": {
			"input": ask(gp, "read", document, {"directives": [object.union(by_hpr, {"active": false})]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"active given as a string does not count": {
			"input": ask(gp, "read", document, {"directives": [object.union(by_hpr, {"active": "true"})]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"block about another patient": {
			"input": ask(gp, "read", document, {"directives": [object.union(by_hpr, {"patient": other_patient})]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"block of another practitioner": {
			"input": ask(gp, "read", document, {"directives": [block({"practitioner": "2000002"})]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"block with nulls does not match a subject without identifiers": {
			"input": ask(object.remove(gp, ["hpr_number", "organisation"]), "read", document, {
				"directives": [block({"unit": "unit-other"})],
			}),
			"allow": true, "reasons": ["care_relation"],
		},
		"block with empty strings does not match empty identifiers": {
			"input": ask(object.union(gp, {"hpr_number": "", "organisation": ""}), "read", document, {
				"directives": [block({"practitioner": "", "organisation": "", "unit": "unit-other"})],
			}),
			"allow": true, "reasons": ["care_relation"],
		},
		"blocks are for practitioners: a system client": {
			"input": ask(system_client, "write", document, {"directives": [block({"organisation": "974600951"})]}),
			"allow": true, "reasons": ["system_scope"],
		},
		"a kind that is not a block": {
			"input": ask(gp, "read", document, {"directives": [object.union(by_hpr, {"kind": "blockade"})]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"directory data has no patient to block": {
			"input": ask(gp, "read", {"type": "Practitioner"}, {"directives": [by_hpr]}),
			"allow": true, "reasons": ["directory"],
		},
	}) == []
}

# --- reservation ----------------------------------------------------------------------------

test_reservation_cases if {
	elsewhere := object.union(document, {"municipality": "1103", "unit": "unit-stavanger"})
	all_categories := reservation("other_municipalities", [])
	reserved := {"allow": false, "reasons": ["no_legal_basis", "reserved"]}
	mismatches({
		"record from another municipality": object.union(reserved, {"input": ask(gp, "read", elsewhere, {
			"directives": [all_categories],
		})}),
		"search of another municipality's record": object.union(reserved, {"input": ask(gp, "search", elsewhere, {
			"directives": [all_categories],
		})}),
		"reserved category": object.union(reserved, {"input": ask(gp, "read", elsewhere, {
			"directives": [reservation("other_municipalities", ["general"])],
		})}),
		"unreadable categories reserve everything": object.union(reserved, {"input": ask(gp, "read", elsewhere, {
			"directives": [reservation("other_municipalities", null)],
		})}),
		"another category is not reserved": {
			"input": ask(gp, "read", elsewhere, {"directives": [reservation("other_municipalities", ["mental_health"])]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"record from the practitioner's own municipality": {
			"input": ask(gp, "read", document, {"directives": [all_categories]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"record origin unknown": {
			"input": ask(gp, "read", object.remove(elsewhere, ["municipality"]), {"directives": [all_categories]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"practitioner's municipality unknown": {
			"input": ask(object.remove(gp, ["municipality"]), "read", elsewhere, {"directives": [all_categories]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"writing is not sharing": {
			"input": ask(gp, "write", elsewhere, {"directives": [all_categories]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"inactive reservation": {
			"input": ask(gp, "read", elsewhere, {"directives": [object.union(all_categories, {"active": false})]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"a nav reservation does not limit treatment": {
			"input": ask(gp, "read", elsewhere, {"directives": [reservation("nav", [])]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"a reservation without scope reserves nothing": {
			"input": ask(gp, "read", elsewhere, {"directives": [reservation(null, [])]}),
			"allow": true, "reasons": ["care_relation"],
		},
		"a nav reservation beats a nav consent": object.union(reserved, {"input": ask(nav, "read", document, {
			"purpose": "nav",
			"directives": [nav_consent, reservation("nav", ["general"])],
		})}),
		"a child welfare reservation beats its consent": object.union(reserved, {"input": ask(child_welfare, "read", document, {
			"purpose": "child_welfare",
			"directives": [consent("999000037", "child_welfare", ["general"]), reservation("child_welfare", [])],
		})}),
		"a child welfare reservation does not limit nav": {
			"input": ask(nav, "read", document, {
				"purpose": "nav",
				"directives": [nav_consent, reservation("child_welfare", [])],
			}),
			"allow": true, "reasons": ["sharing_consent"],
		},
		"a nav reservation of another category": {
			"input": ask(nav, "read", document, {
				"purpose": "nav",
				"directives": [nav_consent, reservation("nav", ["lab_result"])],
			}),
			"allow": true, "reasons": ["sharing_consent"],
		},
		"reserved and blocked": {
			"input": ask(gp, "read", elsewhere, {"directives": [all_categories, block({"unit": "unit-gp-1"})]}),
			"allow": false, "reasons": ["blocked", "no_legal_basis", "reserved"],
		},
	}) == []
}

# --- malformed directives fail closed --------------------------------------------------------

test_malformed_directives_denied if {
	every directives in ["block", 1, null, {"kind": "block"}, [null], [nav_consent, "block"], [[]]] {
		d := authz.decision with input as ask(gp, "read", document, {"directives": directives})
		d.allow == false
		d.reasons == ["invalid_directives", "no_legal_basis"]
		d.obligations == []
	}
}

test_malformed_directives_no_emergency_denied if {
	req := ask(legevakt, "read", document, {"directives": "x", "emergency_reason": "life_threatening"})
	d := authz.decision with input as req
	d.allow == false
	"invalid_directives" in d.reasons
}

test_directives_absent_allowed if {
	req := ask(gp, "read", document, {})
	authz.decision.allow with input as json.remove(req, ["context/directives"])
}
