"""The message catalogue: Bokmål first, English for whatever Bokmål lacks, the key itself for
what neither has; the language chosen, else the browser's, else Bokmål."""

from __future__ import annotations

from console.i18n import EN, NB, choose, has_text, translate


def test_bokmal_is_used_when_it_has_the_text() -> None:
    assert translate("nb", "my_access_log") == "Hvem har sett i journalen min"
    assert translate("en", "my_access_log") == "Who has looked at my record"


def test_a_text_bokmal_lacks_falls_back_to_english() -> None:
    assert not has_text("nb", "chain_intact") and has_text("en", "chain_intact")
    assert translate("nb", "chain_intact") == "The chain is intact."


def test_an_unknown_language_is_bokmal_and_an_unknown_key_shows_itself() -> None:
    assert translate("fr", "log_in") == NB["log_in"]
    assert translate("nb", "no_such_text") == "no_such_text"


def test_values_are_filled_in() -> None:
    assert translate("nb", "practitioner_hpr", number="123") == "helsearbeider 123"
    assert translate("en", "per_day_note", count=3).endswith("(the newest 3).")


def test_every_citizen_text_is_in_bokmal() -> None:
    citizen = [k for k in EN if k.startswith(("my_", "block_", "basis_", "profession_", "type_"))]
    assert citizen and [k for k in citizen if k not in NB] == []
    assert set(NB) <= set(EN)  # English is the complete catalogue


def test_the_language_is_the_chosen_one_else_the_browsers_else_bokmal() -> None:
    assert choose("en", "nb-NO,nb;q=0.9") == "en"
    assert choose(None, "en-GB,en;q=0.8") == "en"
    assert choose(None, "no,en;q=0.5") == "nb" and choose(None, "nn-NO") == "nb"
    assert choose(None, "de-DE,fr;q=0.8") == "nb"
    assert choose("xx", None) == "nb"
