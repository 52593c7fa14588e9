"""ETags of versioned resources and the versions If-Match names."""

from __future__ import annotations

import pytest

from akson_common.errors import PreconditionFailed
from akson_common.etags import etag, expected_version


def test_if_match_names_a_version() -> None:
    assert etag(3) == 'W/"3"'
    assert expected_version('W/"3"') == 3
    assert expected_version('"12"') == 12
    assert expected_version(None) is None and expected_version("*") is None
    for bad in ("3", 'W/"x"', '"1", "2"', 'W/""'):
        with pytest.raises(PreconditionFailed):
            expected_version(bad)
