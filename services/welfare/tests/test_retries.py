"""What the journal's answer means for an entry (recorded, tried again, dead-lettered) and how
far apart the attempts are."""

from __future__ import annotations

from datetime import timedelta

import pytest

from welfare.service import Retry
from welfare.writer import Written


@pytest.mark.parametrize("status", [200, 201])
def test_made_now_or_by_an_earlier_attempt_is_recorded(status: int) -> None:
    assert Written(status, "id").recorded and not Written(status, "id").retryable


@pytest.mark.parametrize("status", [0, 401, 408, 429, 500, 502, 503, 504])
def test_what_the_journal_cannot_take_for_now_is_tried_again(status: int) -> None:
    assert Written(status).retryable and not Written(status).recorded


@pytest.mark.parametrize("status", [400, 403, 404, 409, 412, 422])
def test_a_refusal_of_the_entry_itself_is_for_good(status: int) -> None:
    assert not Written(status).retryable and not Written(status).recorded


def test_attempts_double_from_the_base_up_to_the_cap() -> None:
    retry = Retry(base_seconds=1.0, max_seconds=60.0, max_attempts=100)
    waits = [retry.after(n) for n in range(1, 9)]
    assert waits[:7] == [timedelta(seconds=s) for s in (1, 2, 4, 8, 16, 32, 60)]
    assert waits[7] == timedelta(seconds=60)
