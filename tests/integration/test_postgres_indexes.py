"""The runner's PostgreSQL index layout under FerretDB v1 (infra/local/stack.py GIN_TWINS_SQL):
every declared index on a document field has one GIN twin that FerretDB's pushed-down
filters (``_jsonb->'field' @> value``) can use, no duplicate twins, and no non-unique btree
left to slow every write; unique btrees stay (they enforce the uniqueness)."""

from __future__ import annotations

from collections import Counter

from tests.integration.conftest import Platform
from tests.support import Postgres


def psql(platform: Platform, sql: str) -> list[list[str]]:
    return Postgres(platform.endpoints).query(sql)


def indexes(platform: Platform, schema: str, collection: str) -> list[tuple[str, bool, str]]:
    """(access method, unique, the indexed expressions) of a collection's table."""
    rows = psql(
        platform,
        "SELECT am.amname, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        f"WHERE n.nspname = '{schema}' AND t.relname LIKE '{collection}\\_%' "
        f"AND t.relname NOT LIKE '{collection}\\_%\\_%'",
    )
    return [
        (am, unique == "t", definition.split(" USING ", 1)[1]) for am, unique, definition in rows
    ]


def test_the_decision_chain_has_one_gin_twin_per_field_and_no_plain_btree(
    platform: Platform,
) -> None:
    found = indexes(platform, "akson_audit", "decisions")
    gin = [expression for am, _, expression in found if am == "gin"]
    btree = [(unique, expression) for am, unique, expression in found if am == "btree"]
    assert len(gin) == len(set(gin)), Counter(gin).most_common(3)
    for field in ("patient", "actor", "hpr", "position", "_id"):
        assert any(f"'{field}'" in expression for expression in gin), (field, gin)
    assert btree and all(unique for unique, _ in btree), btree
    assert any("'position'" in expression for _, expression in btree)


def test_a_search_by_patient_uses_the_twin(platform: Platform) -> None:
    table = psql(
        platform,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'akson_journal' AND c.relname LIKE 'resources\\_%' "
        "AND c.relkind = 'r' AND c.relname NOT LIKE 'resources\\_%\\_%'",
    )[0][0]
    plan = psql(
        platform,
        "SET enable_seqscan = off; EXPLAIN SELECT _jsonb FROM "
        f"akson_journal.\"{table}\" WHERE _jsonb->'patient' @> '\"p1\"'::jsonb",
    )
    assert any("Bitmap Index Scan" in row[0] for row in plan), plan
