"""The console's texts: a small message catalogue (a dict per language), Norwegian Bokmål
first for citizens, English as the fallback for any text Bokmål lacks (the auditor's pages are
English only: every auditor text falls back).

``translate(lang, key)`` is the catalogue's text in ``lang``, else English, else the key itself
(a missing text shows as its key, never as an error page). ``choose`` picks the language: the
one the user chose, else the first of the browser's Accept-Language the console has, else
Bokmål.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT = "nb"
FALLBACK = "en"

EN: dict[str, str] = {
    "app_name": "Akson console",
    "skip_to_content": "Skip to content",
    "language": "Language",
    "log_in": "Log in",
    "log_out": "Log out",
    "logged_in_as": "Logged in as",
    "welcome": "The platform's logs, for auditors and for citizens.",
    "welcome_citizen": "Citizens: see who has looked at your health record, and your blocks.",
    "welcome_auditor": "Auditors: search the decision log, review emergency accesses.",
    "login_note": "You log in through the platform's identity service (locally: the development "
    "login page).",
    "no_pages": "There is no page for this account here: the console is for auditors and citizens.",
    "error": "Something went wrong",
    "refused": "Not allowed",
    "refused_detail": "The platform's policy did not allow this.",
    "unavailable": "The platform could not answer. Try again in a moment.",
    "bad_request": "The request could not be understood.",
    "csrf_refused": "The form was out of date or not from this page. Reload the page and try "
    "again.",
    "back_home": "Back to the front page",
    # citizen pages
    "my_access_log": "Who has looked at my record",
    "my_access_log_intro": "Everyone who has opened your health record, when and on what basis. "
    "The contents of the record are not shown here.",
    "my_directives": "My blocks and consents",
    "my_directives_intro": "A block stops a named health worker, unit or organisation from "
    "seeing your record, except in an emergency.",
    "when": "When",
    "who": "Who",
    "profession": "Profession",
    "organisation": "Organisation",
    "what": "What was looked at",
    "basis": "Basis",
    "emergency": "Emergency access",
    "yes": "Yes",
    "no": "No",
    "refresh": "Refresh",
    "no_accesses": "Nobody has looked at your record yet.",
    "unknown_name": "(name not known)",
    "kind": "Kind",
    "target": "Applies to",
    "status": "Status",
    "from_date": "From",
    "to_date": "To",
    "actions": "Actions",
    "withdraw": "Withdraw",
    "withdraw_label": "Withdraw the block of {target}",
    "no_directives": "You have no blocks or consents.",
    "new_block": "Block a health worker, unit or organisation",
    "block_target_kind": "Who to block",
    "block_practitioner": "A health worker (HPR number)",
    "block_unit": "A unit (organisation number)",
    "block_organisation": "An organisation (organisation number)",
    "block_number": "Number",
    "block_number_hint": "HPR number: up to 9 digits. Organisation number: 9 digits.",
    "register_block": "Register the block",
    "block_registered": "The block is registered.",
    "block_withdrawn": "The block is withdrawn.",
    "directive_block": "Block",
    "directive_reservation": "Reservation",
    "directive_consent": "Sharing consent",
    "status_active": "Active",
    "status_withdrawn": "Withdrawn",
    "practitioner_hpr": "health worker {number}",
    "unit_number": "unit {number}",
    "organisation_number": "organisation {number}",
    # basis codes (the policy's reasons)
    "basis_care_relation": "care relation",
    "basis_own_record": "own record",
    "basis_emergency": "emergency",
    "basis_sharing_consent": "your consent",
    "basis_directory": "directory",
    "basis_system_scope": "system",
    "basis_auditor": "audit of the log",
    "system_actor": "A system (an automatic access)",
    "type_Patient": "personal details",
    "type_CareRelation": "care relations",
    "type_AccessReview": "review of an emergency access",
    # record categories
    "category_general": "general record",
    "category_critical_info": "critical information",
    "category_medication": "medication",
    "category_lab": "laboratory results",
    "category_consent": "consents",
    # professions (HPR codes)
    "profession_LE": "doctor",
    "profession_SP": "nurse",
    "profession_HF": "health worker",
    "profession_FT": "physiotherapist",
    "profession_TL": "dentist",
    "profession_JM": "midwife",
    "profession_PS": "psychologist",
    # auditor pages (English only)
    "search": "Search the decision log",
    "search_intro": "Every access decision the policy made: who, what, when, the outcome, its "
    "basis and the policy version.",
    "patient": "Patient (national id)",
    "practitioner": "Practitioner (HPR number)",
    "organisation_filter": "Organisation (organisation number)",
    "period_from": "From (date)",
    "period_to": "To (date, inclusive)",
    "outcome": "Outcome",
    "any": "Any",
    "allowed": "Allowed",
    "refused_outcome": "Refused",
    "emergency_only": "Emergency accesses only",
    "find": "Search",
    "export_csv": "Export this view as CSV",
    "per_day": "Decisions per day",
    "per_day_note": "Counts over the decisions shown below (the newest {count}).",
    "timeline": "Timeline",
    "no_decisions": "No decision matches.",
    "decision": "Decision",
    "actor": "Actor",
    "resource": "Resource",
    "reasons": "Basis (reasons)",
    "policy_version": "Policy version",
    "emergency_reason": "Emergency reason",
    "more_results": "More decisions match than are shown: narrow the search or export it.",
    "reviews": "Emergency accesses to review",
    "reviews_intro": "Each break-glass access waits for an auditor's verdict.",
    "no_reviews": "No emergency access waits for review.",
    "accessed_at": "Accessed at",
    "reason_code": "Reason given",
    "verdict": "Verdict",
    "justified": "Justified",
    "not_justified": "Not justified",
    "comment": "Comment",
    "record_review": "Record the verdict",
    "review_recorded": "The verdict is recorded.",
    "closed_reviews": "Reviewed",
    "reviewer": "Reviewer",
    "findings": "Gaps and snooping signals",
    "gaps": "Gaps in the log",
    "gaps_intro": "Decisions an enforcement point reported that the decision log lacks, or the "
    "reverse (double recording).",
    "no_gaps": "No open gap.",
    "side": "Side",
    "service": "Service",
    "detected_at": "Detected",
    "signals": "Snooping signals",
    "signals_intro": "Today's accesses flagged by the rules, with the numbers that raised them.",
    "no_signals": "No signal today.",
    "rule": "Rule",
    "count": "Count",
    "numbers": "Numbers",
    "explanation": "Explanation",
    "chain": "Chain verification",
    "chain_intact": "The chain is intact.",
    "chain_broken": "The chain is BROKEN.",
    "checked": "Records checked",
    "first_bad_position": "First bad position",
    "checkpoints_checked": "Checkpoints checked",
    "problem": "Problem",
    "nav_search": "Search",
    "nav_reviews": "Reviews",
    "nav_findings": "Gaps and signals",
    "nav_chain": "Chain",
    "nav_access_log": "Access log",
    "nav_directives": "Blocks and consents",
    "decision_id": "Decision id",
}

NB: dict[str, str] = {
    "app_name": "Akson-konsollen",
    "skip_to_content": "Gå til innholdet",
    "language": "Språk",
    "log_in": "Logg inn",
    "log_out": "Logg ut",
    "logged_in_as": "Innlogget som",
    "welcome": "Plattformens logger, for revisorer og for innbyggere.",
    "welcome_citizen": "Innbyggere: se hvem som har sett i journalen din, og sperringene dine.",
    "login_note": "Du logger inn gjennom plattformens identitetstjeneste (lokalt: "
    "utviklingsinnloggingen).",
    "no_pages": "Det finnes ingen side for denne kontoen her: konsollen er for revisorer og "
    "innbyggere.",
    "error": "Noe gikk galt",
    "refused": "Ikke tillatt",
    "refused_detail": "Plattformens regler tillot ikke dette.",
    "unavailable": "Plattformen svarte ikke. Prøv igjen om litt.",
    "bad_request": "Forespørselen kunne ikke forstås.",
    "csrf_refused": "Skjemaet var utdatert eller ikke fra denne siden. Last siden på nytt og "
    "prøv igjen.",
    "back_home": "Tilbake til forsiden",
    "my_access_log": "Hvem har sett i journalen min",
    "my_access_log_intro": "Alle som har åpnet helsejournalen din, når og på hvilket grunnlag. "
    "Innholdet i journalen vises ikke her.",
    "my_directives": "Mine sperringer og samtykker",
    "my_directives_intro": "En sperring hindrer en navngitt helsearbeider, enhet eller "
    "virksomhet i å se journalen din, unntatt i en nødsituasjon.",
    "when": "Når",
    "who": "Hvem",
    "profession": "Yrke",
    "organisation": "Virksomhet",
    "what": "Hva ble sett",
    "basis": "Grunnlag",
    "emergency": "Nødtilgang",
    "yes": "Ja",
    "no": "Nei",
    "refresh": "Oppdater",
    "no_accesses": "Ingen har sett i journalen din ennå.",
    "unknown_name": "(navnet er ikke kjent)",
    "kind": "Type",
    "target": "Gjelder",
    "status": "Status",
    "from_date": "Fra",
    "to_date": "Til",
    "actions": "Handlinger",
    "withdraw": "Trekk tilbake",
    "withdraw_label": "Trekk tilbake sperringen av {target}",
    "no_directives": "Du har ingen sperringer eller samtykker.",
    "new_block": "Sperr en helsearbeider, enhet eller virksomhet",
    "block_target_kind": "Hvem vil du sperre",
    "block_practitioner": "En helsearbeider (HPR-nummer)",
    "block_unit": "En enhet (organisasjonsnummer)",
    "block_organisation": "En virksomhet (organisasjonsnummer)",
    "block_number": "Nummer",
    "block_number_hint": "HPR-nummer: opptil 9 sifre. Organisasjonsnummer: 9 sifre.",
    "register_block": "Registrer sperringen",
    "block_registered": "Sperringen er registrert.",
    "block_withdrawn": "Sperringen er trukket tilbake.",
    "directive_block": "Sperring",
    "directive_reservation": "Reservasjon",
    "directive_consent": "Samtykke til deling",
    "status_active": "Aktiv",
    "status_withdrawn": "Trukket tilbake",
    "practitioner_hpr": "helsearbeider {number}",
    "unit_number": "enhet {number}",
    "organisation_number": "virksomhet {number}",
    "basis_care_relation": "behandlingsrelasjon",
    "basis_own_record": "egen journal",
    "basis_emergency": "nødrett",
    "basis_sharing_consent": "ditt samtykke",
    "basis_directory": "oppslag",
    "basis_system_scope": "system",
    "basis_auditor": "kontroll av loggen",
    "system_actor": "Et system (maskinell tilgang)",
    "type_Patient": "personopplysninger",
    "type_CareRelation": "behandlingsrelasjoner",
    "type_AccessReview": "kontroll av en nødtilgang",
    "category_general": "journalnotat",
    "category_critical_info": "kritisk informasjon",
    "category_medication": "legemidler",
    "category_lab": "laboratoriesvar",
    "category_consent": "samtykker",
    "profession_LE": "lege",
    "profession_SP": "sykepleier",
    "profession_HF": "helsefagarbeider",
    "profession_FT": "fysioterapeut",
    "profession_TL": "tannlege",
    "profession_JM": "jordmor",
    "profession_PS": "psykolog",
    "nav_access_log": "Innsynslogg",
    "nav_directives": "Sperringer og samtykker",
}

CATALOGUE: Mapping[str, Mapping[str, str]] = {"nb": NB, "en": EN}
LANGUAGES = tuple(CATALOGUE)


def translate(lang: str | None, key: str, **values: object) -> str:
    catalogue = CATALOGUE.get(lang or DEFAULT) or CATALOGUE[DEFAULT]
    text = catalogue.get(key) or EN.get(key) or key
    return text.format(**values) if values else text


def has_text(lang: str, key: str) -> bool:
    return key in CATALOGUE.get(lang, {})


def choose(chosen: str | None, accept_language: str | None) -> str:
    """The chosen language if the console has it, else the browser's first it has (``no``,
    ``nn``: Bokmål), else Bokmål."""
    if chosen in CATALOGUE:
        return str(chosen)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        primary = tag.split("-")[0]
        if primary in ("nb", "no", "nn"):
            return "nb"
        if primary in CATALOGUE:
            return primary
    return DEFAULT
