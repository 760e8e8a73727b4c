"""The schema `vigil migrate` creates on current ClickHouse, run in chdb (current ClickHouse
in-process). CI's own server is Debian's 18.16, so this is where the modern-only DDL
(LowCardinality, TTL) meets a modern parser and engine."""

import os
import re
import subprocess
from pathlib import Path

import chdb
import pytest

REPO = Path(__file__).resolve().parents[2]
VIGIL = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "debug" / "vigil"))


def ddl(server_version: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL")}
    out = subprocess.run(
        [str(VIGIL), "migrate", "--print-ddl", server_version],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    statements = []
    for chunk in out.split(";"):
        sql = "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        if sql:
            statements.append(sql)
    assert statements, f"no DDL printed for {server_version}"
    return statements


@pytest.fixture()
def session(tmp_path):
    from chdb import session as chs
    s = chs.Session(str(tmp_path / "chdb"))
    yield s
    s.close()


def test_modern_ddl_runs_on_current_clickhouse(session):
    statements = ddl("24.8")
    assert any("TTL" in s for s in statements), "retention is applied as a TTL on current servers"
    assert any("LowCardinality" in s for s in statements)
    for statement in statements:
        session.query(statement)
    cols = session.query(
        "SELECT name, type FROM system.columns WHERE database = 'vigil' AND table = 'window_partials' ORDER BY position",
        "CSV",
    ).bytes().decode()
    assert '"model_id","LowCardinality(String)"' in cols
    assert '"source_end_offset","Int64"' in cols
    engine = session.query(
        "SELECT engine_full FROM system.tables WHERE database = 'vigil' AND name = 'window_partials'", "CSV"
    ).bytes().decode()
    assert "TTL window_start + toIntervalDay(400)" in engine


def test_running_the_ddl_twice_changes_nothing(session):
    statements = ddl("24.8")
    for _ in range(2):
        for statement in statements:
            session.query(statement)
    created = sorted(re.findall(r"CREATE TABLE IF NOT EXISTS vigil\.(\w+)", "\n".join(statements)))
    assert "window_partials" in created and "schema_migrations" in created
    tables = session.query("SELECT name FROM system.tables WHERE database = 'vigil' ORDER BY name", "CSV").bytes().decode()
    assert [t.strip('"') for t in tables.split()] == created


def test_old_server_ddl_avoids_modern_syntax():
    for statement in ddl("18.16"):
        assert "TTL" not in statement and "LowCardinality" not in statement
