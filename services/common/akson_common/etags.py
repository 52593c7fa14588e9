"""Versioned resources: the ETag of a version and the version an If-Match header expects.

A resource's version is a counter that grows with every change; its ETag is weak
(``W/"<version>"``) because the representations (JSON, FHIR) differ byte for byte.
"""

from __future__ import annotations

from akson_common.errors import PreconditionFailed, PreconditionRequired


def etag(version: int) -> str:
    return f'W/"{version}"'


def expected_version(if_match: str | None, *, required: bool = False) -> int | None:
    """The version an ``If-Match`` header names; None when absent or ``*`` (any version).

    Weak and strong forms are both accepted (``W/"3"``, ``"3"``); a list of several tags, or a
    tag that is no version of ours, can never match: 412. ``required``: an update must name
    the version it replaces (absent, empty or ``*``: 428).
    """
    if if_match is None or not if_match.strip() or if_match.strip() == "*":
        if required:
            raise PreconditionRequired("an update needs If-Match with the version it replaces")
        return None
    tag = if_match.strip().removeprefix("W/")
    if len(tag) < 3 or not (tag.startswith('"') and tag.endswith('"')):
        raise PreconditionFailed('If-Match must name one version, e.g. W/"1"')
    value = tag[1:-1]
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise PreconditionFailed("If-Match does not name a version of this resource")
    return int(value)
