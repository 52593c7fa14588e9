# The patient's directives as overrides: blocks and reservations, table-driven.
package akson.authz_test

import data.akson.authz

# --- block ----------------------------------------------------------------------------------

by_hpr := block({"practitioner": "1000001"})

blocked := ["blocked", "no_legal_basis"]

with_directives(directives) := {"directives": directives}

block_cases := {
	"block of the practitioner": denies(ask(gp, "read", document, with_directives([by_hpr])), blocked),
	"block of the unit": denies(ask(gp, "search", document, with_directives([block({"unit": "unit-gp-1"})])), blocked),
	"block of the organisation": denies(ask(gp, "read", document, with_directives([gp_org_block])), blocked),
	"block holds for writes": denies(ask(gp, "write", document, with_directives([by_hpr])), blocked),
	"block holds for demographics": denies(ask(gp, "read", doc("demographics"), with_directives([by_hpr])), blocked),
	"a block among other directives": denies(
		ask(gp, "read", document, with_directives([nav_consent, block({"practitioner": "2000002"}), by_hpr])),
		blocked,
	),
	"block and no relation": denies(
		ask(gp, "read", document, {"directives": [by_hpr], "care_relations": []}),
		["blocked", "no_care_relation", "no_legal_basis"],
	),
	"inactive block": allows(
		ask(gp, "read", document, with_directives([object.union(by_hpr, {"active": false})])),
		["care_relation"],
	),
	"active given as a string does not count": allows(
		ask(gp, "read", document, with_directives([object.union(by_hpr, {"active": "true"})])),
		["care_relation"],
	),
	"block about another patient": allows(
		ask(gp, "read", document, with_directives([object.union(by_hpr, {"patient": other_patient})])),
		["care_relation"],
	),
	"block of another practitioner": allows(
		ask(gp, "read", document, with_directives([block({"practitioner": "2000002"})])),
		["care_relation"],
	),
	"block with nulls does not match a subject without identifiers": allows(
		ask(object.remove(gp, ["hpr_number", "organisation"]), "read", document, with_directives([other_unit_block])),
		["care_relation"],
	),
	"block with empty strings does not match empty identifiers": allows(
		ask(object.union(gp, {"hpr_number": "", "organisation": ""}), "read", document, with_directives([empty_block])),
		["care_relation"],
	),
	"blocks are for practitioners: a system client": allows(
		ask(system_client, "write", document, with_directives([gp_org_block])),
		["system_scope"],
	),
	"a kind that is not a block": allows(
		ask(gp, "read", document, with_directives([object.union(by_hpr, {"kind": "blockade"})])),
		["care_relation"],
	),
	"directory data has no patient to block": allows(
		ask(gp, "read", {"type": "Practitioner"}, with_directives([by_hpr])),
		["directory"],
	),
}

other_unit_block := block({"unit": "unit-other"})

empty_block := block({"practitioner": "", "organisation": "", "unit": "unit-other"})

test_block_cases if mismatches(block_cases) == []

# --- reservation ----------------------------------------------------------------------------

elsewhere := object.union(document, {"municipality": "1103", "unit": "unit-stavanger"})

all_categories := reservation("other_municipalities", [])

reserved := ["no_legal_basis", "reserved"]

reserved_for_nav := {"purpose": "nav", "directives": [nav_consent, reservation("nav", ["general"])]}

child_welfare_reserved := {
	"purpose": "child_welfare",
	"directives": [consent("999000037", "child_welfare", ["general"]), reservation("child_welfare", [])],
}

reservation_cases := {
	"record from another municipality": denies(ask(gp, "read", elsewhere, with_directives([all_categories])), reserved),
	"search of another municipality's record": denies(
		ask(gp, "search", elsewhere, with_directives([all_categories])),
		reserved,
	),
	"reserved category": denies(
		ask(gp, "read", elsewhere, with_directives([reservation("other_municipalities", ["general"])])),
		reserved,
	),
	"unreadable categories reserve everything": denies(
		ask(gp, "read", elsewhere, with_directives([reservation("other_municipalities", null)])),
		reserved,
	),
	"another category is not reserved": allows(
		ask(gp, "read", elsewhere, with_directives([reservation("other_municipalities", ["mental_health"])])),
		["care_relation"],
	),
	"record from the practitioner's own municipality": allows(
		ask(gp, "read", document, with_directives([all_categories])),
		["care_relation"],
	),
	"record origin unknown": allows(
		ask(gp, "read", object.remove(elsewhere, ["municipality"]), with_directives([all_categories])),
		["care_relation"],
	),
	"practitioner's municipality unknown": allows(
		ask(object.remove(gp, ["municipality"]), "read", elsewhere, with_directives([all_categories])),
		["care_relation"],
	),
	"writing is not sharing": allows(ask(gp, "write", elsewhere, with_directives([all_categories])), ["care_relation"]),
	"inactive reservation": allows(
		ask(gp, "read", elsewhere, with_directives([object.union(all_categories, {"active": false})])),
		["care_relation"],
	),
	"a nav reservation does not limit treatment": allows(
		ask(gp, "read", elsewhere, with_directives([reservation("nav", [])])),
		["care_relation"],
	),
	"a reservation without scope reserves nothing": allows(
		ask(gp, "read", elsewhere, with_directives([reservation(null, [])])),
		["care_relation"],
	),
	"a nav reservation beats a nav consent": denies(ask(nav, "read", document, reserved_for_nav), reserved),
	"a child welfare reservation beats its consent": denies(
		ask(child_welfare, "read", document, child_welfare_reserved),
		reserved,
	),
	"a child welfare reservation does not limit nav": allows(
		ask(nav, "read", document, {"purpose": "nav", "directives": [nav_consent, reservation("child_welfare", [])]}),
		["sharing_consent"],
	),
	"a nav reservation of another category": allows(
		ask(nav, "read", document, {"purpose": "nav", "directives": [nav_consent, reservation("nav", ["lab_result"])]}),
		["sharing_consent"],
	),
	"reserved and blocked": denies(
		ask(gp, "read", elsewhere, with_directives([all_categories, block({"unit": "unit-gp-1"})])),
		["blocked", "no_legal_basis", "reserved"],
	),
}

test_reservation_cases if mismatches(reservation_cases) == []

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
