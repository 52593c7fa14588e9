"""Run the whole Akson platform locally on the real runtime pieces.

One runner for `make up`, `make down` and the integration tests: redis-server, FerretDB (SQLite),
OPA, and for every service under services/ its uvicorn app plus its own daprd sidecar, each on a
free port, each with its own log file, waiting until everything answers its health check.

    python infra/local/stack.py up [--run-dir DIR]     start a supervisor, print the endpoint table
    python infra/local/stack.py down [--run-dir DIR]   stop everything that run started
    python infra/local/stack.py status [--run-dir DIR] every process: pid, uptime, restarts
    python infra/local/stack.py supervise [--run-dir DIR]
                                                       start and watch everything (what `up` runs,
                                                       detached, in its own session)

    python infra/local/stack.py mint personnel|citizen ID [--unit ORG] [--run-dir DIR]
                                                       an upstream token to exchange at identity

What listens where is written to DIR/endpoints.json; secrets to DIR/secrets/ (mode 0600).
Every process is supervised once it is up: one that exits is restarted after a bounded
exponential backoff (0.5 s doubling to 30 s, back to 0.5 s after a minute of stable running),
each exit and restart logged to DIR/logs/supervisor.log, the state (per process: pid, started at,
restarts, last exit code) kept in DIR/state.json. A process stopped on purpose (``Stack.stop``)
is left alone until ``Stack.start``.
The platform's tokens come from the identity service; it trusts two development upstream
issuers (HelseID-like for personnel, ID-porten-like for citizens) whose keys are generated here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Protocol

import declarations
from declarations import Declaration, Facts

if TYPE_CHECKING:
    from streams import StreamTrimmer

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "infra" / "local"
# AKSON_RUN_DIR: another run folder for every command (`make up`, `make token`, ...), e.g. a
# test stack's
DEFAULT_RUN_DIR = Path(os.environ.get("AKSON_RUN_DIR") or ROOT / ".run")
SERVICES_DIR = ROOT / "services"
NON_SERVICES = {"common"}
UPSTREAM = {
    # HelseID-like: the HPR number and the unit chosen at login in HelseID's claim names
    "personnel": {
        "issuer": "https://helseid.dev.akson.local",
        "kind": "practitioner",
        "subject_claim": "helseid://claims/hpr/hpr_number",
        "unit_claim": "helseid://claims/client/claims/orgnr_child",
    },
    # ID-porten-like: the national id in `pid`
    "citizen": {
        "issuer": "https://idporten.dev.akson.local",
        "kind": "citizen",
        "subject_claim": "pid",
        "unit_claim": "",
    },
}
UPSTREAM_AUDIENCE = "akson"
TEST_CLIENT = "akson-test-client"
RESOURCE_TYPES = (
    "Patient",
    "CareRelation",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "DocumentReference",
    "AllergyIntolerance",
    "Flag",
    "MedicationStatement",
    "DiagnosticReport",
    "Observation",
    "Encounter",
    "Consent",
    # integrations' operator views (reconciliation, dead letters): not health data
    "IntegrationExport",
    "Communication",
)
TEST_CLIENT_SCOPES = [
    *(f"{t}.{a}" for t in RESOURCE_TYPES for a in ("read", "write", "search")),
    "Patient.address",
]
# Dev system clients registered next to the test client (same key pair, each its own id):
# a lab system that delivers results, NAV and child welfare (organisations that read only under a
# citizen's sharing consent) and an auditor. Organisation numbers are synthetic (valid mod 11).
DEV_CLIENTS: dict[str, dict[str, Any]] = {
    "lab": {
        "client_id": "akson-dev-lab",
        "organisation": "999000010",
        "scopes": ["DiagnosticReport.write", "Observation.write"],
    },
    "nav": {"client_id": "akson-dev-nav", "organisation": "999000029", "roles": ["nav"]},
    "child_welfare": {
        "client_id": "akson-dev-child-welfare",
        "organisation": "999000037",
        "roles": ["child_welfare"],
    },
    "auditor": {
        "client_id": "akson-dev-auditor",
        "organisation": "999000045",
        "roles": ["auditor"],
    },
    # the app registry's administrator (identity's /apps)
    "admin": {"client_id": "akson-dev-admin", "roles": ["admin"]},
}
# (a service's own clients, settings and helper processes are declared in its folder:
# ``[tool.akson.local]`` in services/<name>/pyproject.toml, read by infra/local/declarations.py)
# short local cache and publication lead, so a key rotation is seen within seconds: the lead
# exceeds the services' JWKS age plus identity's own key re-read (1 s)
JWKS_MAX_AGE_SECONDS = 2
KEY_PUBLISH_LEAD_SECONDS = 5
# a named practitioner whom identity grants the auditor's role (the console's log auditor)
DEV_AUDITOR_HPR = "9700006"
# Supervision: the first restart after 0.5 s, doubling to 30 s for a process that keeps exiting;
# a process that ran a stable minute before it exited starts again from 0.5 s.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0
SUPERVISE_INTERVAL_SECONDS = 0.1
SUPERVISOR_LOG = "supervisor.log"


def discover_services(root: Path = SERVICES_DIR) -> list[str]:
    """Every folder under services/ with a ``<name>/main.py`` is a service: adding one is that
    (what the runner must give it beyond the shared settings, it declares in its folder)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name not in NON_SERVICES and (p / p.name / "main.py").is_file()
    )


def declarations_of(services: list[str], root: Path = SERVICES_DIR) -> dict[str, Declaration]:
    """Each service's ``[tool.akson.local]`` (infra/local/declarations.py)."""
    return {s: declarations.read(root / s) for s in services}


def storage_services(services: list[str], root: Path = SERVICES_DIR) -> list[str]:
    """The services with a database client (those FerretDB's pool must serve)."""
    return [s for s, d in declarations_of(services, root).items() if d.storage]


def api_services(services: list[str], root: Path = SERVICES_DIR) -> list[str]:
    """The services with an API of their own (a token audience at identity)."""
    return [s for s, d in declarations_of(services, root).items() if d.audience]


def fhir_base_service(services: list[str], root: Path = SERVICES_DIR) -> str | None:
    """The service that is the platform's one FHIR base, if the stack has it."""
    return next((s for s, d in declarations_of(services, root).items() if d.fhir_base), None)


# Listening ports come from below the kernel's ephemeral range (ip_local_port_range, 32768+ by
# default): a port the kernel handed out by bind(0) is also what it hands to the next outgoing
# connection, so under load a sidecar found "its" port taken ("could not listen on any
# endpoint"). Random choice spreads concurrent stacks; the bind check skips ports in use.
PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(1000):
        port = secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0]) + PORT_RANGE[0]
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def tool_paths() -> dict[str, str]:
    """Build (first time) or reuse the pinned Go tools; install redis-server when missing."""
    out = subprocess.run(
        [str(ROOT / "infra" / "tools" / "build.sh"), "opa", "ferretdb", "daprd"],
        check=True,
        capture_output=True,
        text=True,
    )
    paths = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    redis = shutil.which("redis-server")
    if redis is None:
        ensure_packages("redis-server=redis-server")
        redis = shutil.which("redis-server")
    if redis is None:
        raise SystemExit("redis-server is not available")
    paths["redis-server"] = redis
    return paths


def ensure_packages(*pairs: str) -> None:
    """Install the OS packages whose probe finds nothing (infra/tools/ensure-packages.sh)."""
    subprocess.run([str(ROOT / "infra" / "tools" / "ensure-packages.sh"), *pairs], check=True)


DB_BACKEND = os.environ.get("AKSON_DB_BACKEND", "postgresql")


# _define_processes' ``add(name, argv, healthy, env)``
class AddProcess(Protocol):
    def __call__(
        self, name: str, argv: list[str], healthy: Any, env: dict[str, str] | None = None
    ) -> None: ...


# FerretDB and OPA are Go: with the default GOGC=100 their garbage collector took a fifth of
# their CPU under load (issue 15's pprof: mallocgc 21 %, background mark 14 %). Both keep
# small heaps (< 150 MiB), so a collection every 4x growth is cheap in memory.
GO_GC = {"GOGC": os.environ.get("AKSON_GOGC", "400")}
# FerretDB v1 holds a PostgreSQL connection for a write command while it takes a second one
# (issue 15): once every connection of its pool (pool_max_conns, default 50) is held by such a
# command, none finishes. So its pool is larger than twice what the services can ask at once:
# each service's client keeps at most SERVICE_MONGO_POOL connections, each command of theirs
# holds at most FERRETDB_CONNECTIONS_PER_COMMAND (nine services: 108 commands, 216
# connections at the worst, under FERRETDB_POOL; `Stack.prepare` refuses a stack whose
# services could ask for more). PostgreSQL's max_connections is that pool plus 60 for psql,
# the tests and the load tools (postgres_settings). make chaos (pool): 200 concurrent updates
# against master data held at most 29 connections.
FERRETDB_POOL = 240
SERVICE_MONGO_POOL = 12
FERRETDB_CONNECTIONS_PER_COMMAND = 2


# what a run folder holds besides the state files
RUN_FOLDERS = ("logs", "secrets", "dapr/components", "ferretdb", "redis", "exports", "upstream",
               "identity")  # fmt: skip


def _local_app(module: str, port: int) -> list[str]:
    """A development helper app of infra/local (``<module>:app``) under uvicorn."""
    return [sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir", str(LOCAL),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning"]  # fmt: skip


def pool_arithmetic(services: int) -> str | None:
    """Why ``services`` services could exhaust FerretDB's pool, or None when they cannot."""
    worst = services * SERVICE_MONGO_POOL * FERRETDB_CONNECTIONS_PER_COMMAND
    if worst < FERRETDB_POOL:
        return None
    return (
        f"{services} services x {SERVICE_MONGO_POOL} connections x "
        f"{FERRETDB_CONNECTIONS_PER_COMMAND} per command = {worst}, not under FerretDB's pool "
        f"of {FERRETDB_POOL}: raise FERRETDB_POOL or lower SERVICE_MONGO_POOL"
    )


# FerretDB v1 (PostgreSQL) pushes a filter {field: value} down as `_jsonb->'field' @> value`,
# which the btree expression indexes it creates for createIndexes cannot serve: every filtered
# query was a sequential scan (an auditor's query by patient over 1M decisions: 8 s). This event
# trigger gives each such btree index a GIN twin on the same expressions, which can (31 ms).
# One twin per (table, expression): seven compound indexes (field, position) on audit's
# decisions made seven identical GIN indexes on position, each one more write per decision.
# The non-unique btree itself is dropped (no FerretDB query can use it): a decision's insert
# cost 0.4 ms of PostgreSQL with twenty indexes to update.
# Without the pending list (fastupdate = off): after a bulk insert, every lookup read the list
# of entries not yet merged into the index, linearly (FerretDB's update is a lookup and a write:
# 368 updates/s after 20k inserts, 1,192 with fastupdate off).
# Local only: MongoDB in production uses its own indexes.
GIN_TWINS_SQL = """
CREATE OR REPLACE FUNCTION akson_gin_twins() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  command record;
  position int;
  expression text;
  keys int;
  target regclass;
  twinned boolean := false;
BEGIN
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
      WHERE command_tag = 'CREATE INDEX' LOOP
    CONTINUE WHEN (SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam
                   WHERE c.oid = command.objid) <> 'btree';
    SELECT indnkeyatts, indrelid INTO keys, target FROM pg_index
      WHERE indexrelid = command.objid;
    FOR position IN 1..keys LOOP
      expression := pg_get_indexdef(command.objid, position, true);
      CONTINUE WHEN expression NOT LIKE '%_jsonb -> %';
      EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((%s) jsonb_path_ops)'
                     ' WITH (fastupdate = off)',
                     'gin_' || md5(target::text || expression), target, expression);
      twinned := true;
    END LOOP;
    -- a non-unique btree on _jsonb expressions serves no FerretDB query (its filters are @>,
    -- it sorts in Go) and only costs every write: dropped once twinned. Unique ones stay,
    -- they enforce the uniqueness (FerretDB's catalogue keeps listing it either way).
    IF twinned AND NOT (SELECT indisunique FROM pg_index WHERE indexrelid = command.objid) THEN
      EXECUTE format('DROP INDEX %s', command.objid::regclass);
    END IF;
    twinned := false;
  END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS akson_gin_twins;
CREATE EVENT TRIGGER akson_gin_twins ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION akson_gin_twins();
"""


def install_gin_twins(pg: Path, port: int, password: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the port answers a moment before the server accepts sessions
        answer = subprocess.run(
            [str(pg / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "akson", "-d",
             "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", GIN_TWINS_SQL],
            env={**os.environ, "PGPASSWORD": password},
            capture_output=True,
            text=True,
        )  # fmt: skip
        if answer.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"could not install the GIN twin trigger: {answer.stderr}")
        time.sleep(0.2)


# FerretDB v1 passes each client's credentials through to PostgreSQL (PLAIN) and has no
# credentials of its own: the services log in as this role, which owns what it creates (one
# schema per service database) and nothing else. Not one role per service: FerretDB v1 keeps one
# metadata cache for all clients, filled from the first client's view of the schemas, so a role
# that sees only its own schema would hide the others' collections from everyone.
APP_ROLE = "akson_app"


def create_app_role(pg: Path, port: int, password: str, role_password: str) -> None:
    sql = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
ALTER ROLE {APP_ROLE} PASSWORD '{role_password}';
GRANT CREATE ON DATABASE postgres TO {APP_ROLE};
"""
    answer = subprocess.run(
        [str(pg / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "akson", "-d",
         "postgres", "-v", "ON_ERROR_STOP=1", "-q"],
        env={**os.environ, "PGPASSWORD": password},
        input=sql,  # on stdin: the role's password in no process list
        capture_output=True,
        text=True,
    )  # fmt: skip
    if answer.returncode != 0:
        raise RuntimeError(f"could not create the application role: {answer.stderr}")


def postgres_settings() -> list[str]:
    """The runner's PostgreSQL server settings (``-c name=value`` arguments)."""
    return [
        "-c",
        "listen_addresses=127.0.0.1",
        # FerretDB's pool (FERRETDB_POOL) plus psql, the tests and the load tools
        "-c",
        f"max_connections={FERRETDB_POOL + 60}",
        # local data: a commit is written to the operating system before it is acknowledged
        # (synchronous_commit on: with it off, kill -9 of PostgreSQL lost an acknowledged
        # write, make chaos database), but never forced to the disk (fsync off): every write
        # survives any process's crash, not a power loss of the machine
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=on",
        "-c",
        "full_page_writes=off",
        # FerretDB prepares its statements: a generic plan made while a collection
        # was tiny skips the GIN index once it is large (issue 15: 2.85 ms instead
        # of 0.94 ms a find at 10k documents), and an import grows them from empty
        "-c",
        "plan_cache_mode=force_custom_plan",
        # no statement and no parameter in the log: they carry national ids
        "-c",
        "log_min_error_statement=panic",
        "-c",
        "log_error_verbosity=terse",
        "-c",
        "log_parameter_max_length=0",
        "-c",
        "log_parameter_max_length_on_error=0",
        # statement statistics for the profile (`make profile`, issue 15): off unless
        # asked for; pg_stat_statements keeps normalised statements, no parameters
        *(
            ["-c", "shared_preload_libraries=pg_stat_statements"]
            if os.environ.get("AKSON_PG_STAT_STATEMENTS") == "1"
            else []
        ),
    ]


def postgres_bin() -> Path:
    """Debian's PostgreSQL server binaries (installed from the OS packages when missing)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    if not candidates:
        ensure_packages("postgresql=/usr/lib/postgresql/*/bin/postgres")
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda p: int(p.parent.parent.name),
        )
    if not candidates:
        raise SystemExit("PostgreSQL is not available")
    return candidates[-1].parent


DATABASE_USER = "postgres"  # the OS packages' user


def as_database_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the OS packages' `postgres` user then."""
    return ["runuser", "-u", DATABASE_USER, "--", *argv] if os.geteuid() == 0 else argv


def http_ok(url: str, headers: dict[str, str] | None = None, timeout: float = 1.0) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    healthy: Any  # Callable[[], bool]
    cwd: Path = ROOT
    popen: subprocess.Popen[bytes] | None = None
    after_start: Any = None  # Callable[[], None] | None: run once the process is healthy
    # the OS user to run it as (PostgreSQL refuses root): set by Popen itself, so the pid the
    # supervisor watches is the server's, not a `runuser` wrapper's (kill -9 of the wrapper left
    # the postmaster running and every restart failed on its lock file: make chaos)
    user: str | None = None
    # supervision (the running machinery's bookkeeping, see Supervisor)
    supervised: bool = False  # restart it when it exits (off while stopped on purpose)
    state: str = "defined"  # defined | starting | running | exited | stopped | failed
    started_at: float = 0.0  # wall clock of the last start
    started_monotonic: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    backoff: float = BACKOFF_FIRST_SECONDS
    restart_at: float = 0.0  # monotonic

    def status(self) -> dict[str, Any]:
        alive = self.popen is not None and self.popen.poll() is None
        return {
            "pid": self.popen.pid if self.popen is not None else None,
            "alive": alive,
            "state": self.state,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "log": str(self.log),
        }


@dataclass
class Stack:
    run_dir: Path = DEFAULT_RUN_DIR
    services: list[str] = field(default_factory=discover_services)
    # where each service's folder is (a test's throwaway service: its own root)
    services_root: Path = SERVICES_DIR
    endpoints: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    supervisor: Supervisor | None = None
    # held by the supervisor for each round and by start/stop while they change a process
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- preparation -----------------------------------------------------------------------
    @cached_property
    def declared(self) -> dict[str, Declaration]:
        """What each service of this stack declares it needs (its ``[tool.akson.local]``)."""
        return declarations_of(self.services, self.services_root)

    def _ports(self) -> dict[str, int]:
        """A free port for each infrastructure process, each service's app and sidecar, and
        each helper process a service declares."""
        ports = {
            "redis": free_port(),
            "mongo": free_port(),
            "opa": free_port(),
            "ferretdb_debug": free_port(),
            "postgres": free_port(),
            "opa_diagnostics": free_port(),
            "message_peer": free_port(),
            "dev_login": free_port(),
        }
        for service in self.services:
            for kind in ("app", "dapr_http", "dapr_grpc", "dapr_internal", "dapr_metrics"):
                ports[f"{service}_{kind}"] = free_port()
            for helper in self.declared[service].processes:
                if helper.port not in ports:
                    ports[helper.port] = free_port()
        return ports

    def prepare(self) -> None:
        exhausting = pool_arithmetic(sum(d.storage for d in self.declared.values()))
        if exhausting is not None:
            raise RuntimeError(exhausting)
        for sub in RUN_FOLDERS:
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        tools = tool_paths()
        ports = self._ports()
        # Kept per run folder: its PostgreSQL data was initialised with this password, so a
        # second `make up` on the same folder must not generate new ones.
        secret_values = self._generated_secrets(
            "redis_password",
            "postgres_password",
            "database_password",
            "dapr_api_token",
            "app_api_token",
            "audit_upload_token",
            "message_inbound_token",
            "partition_key_secret",
            "opa_token",
        )
        self._write_secret("tokens.json", secret_values)
        self._write_secret("dapr-secrets.json", {"redis-password": secret_values["redis_password"]})
        # the token service (without one, e.g. a throwaway service's stack: nothing answers)
        issuer = next((s for s, d in self.declared.items() if d.issues_tokens), None)
        identity_url = f"http://127.0.0.1:{ports[f'{issuer}_app'] if issuer else 9}"
        self.endpoints = {
            "run_dir": str(self.run_dir),
            "tools": tools,
            "ports": ports,
            "redis": {"address": f"127.0.0.1:{ports['redis']}"},
            "mongo": {
                "address": f"127.0.0.1:{ports['mongo']}",
                # PLAIN: FerretDB passes the credentials on to PostgreSQL
                "url": f"mongodb://{APP_ROLE}:{secret_values['database_password']}"
                f"@127.0.0.1:{ports['mongo']}/?authMechanism=PLAIN",
            },
            "opa": {"url": f"http://127.0.0.1:{ports['opa']}"},
            "identity": {
                "issuer": identity_url,
                "jwks_uri": f"{identity_url}/jwks",
                "token_endpoint": f"{identity_url}/token",
            },
            "upstream": {name: self._upstream_issuer(name) for name in UPSTREAM},
            "test_client": self._test_client(ports),
            "message_peer": {"url": self._message_peer_url(ports)},
            "dev_login": {"url": f"http://127.0.0.1:{ports['dev_login']}/login"},
            "services": {
                s: {
                    "app": f"http://127.0.0.1:{ports[f'{s}_app']}",
                    "dapr_http": f"http://127.0.0.1:{ports[f'{s}_dapr_http']}",
                    "dapr_grpc": f"127.0.0.1:{ports[f'{s}_dapr_grpc']}",
                }
                for s in self.services
            },
        }
        for s, declared in self.declared.items():
            if declared.fhir_base:  # the platform's one FHIR base (the gateway's)
                self.endpoints["fhir"] = {"base": f"{self.endpoints['services'][s]['app']}"
                                          f"{declared.fhir_base}"}  # fmt: skip
        self._render_dapr_files()
        self._define_processes(secret_values)
        endpoints = self.run_dir / "endpoints.json"  # the database URL carries a password
        endpoints.touch(mode=0o600, exist_ok=True)
        endpoints.chmod(0o600)
        endpoints.write_text(json.dumps(self.endpoints, indent=2))

    def _write_secret(self, name: str, values: dict[str, str]) -> None:
        path = self.run_dir / "secrets" / name
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(values))

    def _key_pair(self, name: str, public_file: Path) -> Path:
        """An RSA key (once per run folder): private in secrets/, its JWKS in ``public_file``."""
        from joserfc.jwk import RSAKey

        key_file = self.run_dir / "secrets" / f"{name}-key.json"
        if not key_file.exists():
            key = RSAKey.generate_key(
                2048, parameters={"kid": f"{name}-1", "use": "sig", "alg": "RS256"}, private=True
            )
            key_file.touch(mode=0o600)
            key_file.write_text(json.dumps(key.as_dict(private=True)))
            public_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
        return key_file

    def _upstream_issuer(self, name: str) -> dict[str, str]:
        """A development upstream identity provider (HelseID / ID-porten stand-in)."""
        jwks_file = self.run_dir / "upstream" / f"{name}-jwks.json"
        key_file = self._key_pair(f"upstream-{name}", jwks_file)
        return {
            **UPSTREAM[name],
            "audience": UPSTREAM_AUDIENCE,
            "jwks_file": str(jwks_file),
            "private_key_file": str(key_file),
        }

    def _test_client(self, ports: dict[str, int]) -> dict[str, Any]:
        """The system client the tests (and `make up` users) authenticate as: its public key is
        registered at identity, its private key stays in secrets/."""
        jwks_file = self.run_dir / "identity" / f"{TEST_CLIENT}-jwks.json"
        key_file = self._key_pair(TEST_CLIENT, jwks_file)
        clients_file = self.run_dir / "identity" / "clients.json"
        jwks = json.loads(jwks_file.read_text())
        registrations = [
            {"client_id": TEST_CLIENT, "jwks": jwks, "scopes": TEST_CLIENT_SCOPES},
            *({**client, "jwks": jwks} for client in DEV_CLIENTS.values()),
        ]
        dev_clients = {name: client["client_id"] for name, client in DEV_CLIENTS.items()}
        for s, declared in self.declared.items():
            app = f"http://127.0.0.1:{ports[f'{s}_app']}"
            for client in declared.clients:
                registrations.append(self._declared_client(s, client, app, jwks))
                dev_clients[client.name] = client.client_id
        clients_file.write_text(json.dumps(registrations))
        return {
            "client_id": TEST_CLIENT,
            "private_key_file": str(key_file),
            "clients_file": str(clients_file),
            "dev_clients": dev_clients,
        }

    def _declared_client(
        self, s: str, client: declarations.Client, app: str, jwks: dict[str, Any]
    ) -> dict[str, Any]:
        """A client a service declares, as identity's clients file has it: a system client
        with the development key pair, a public one (a browser's) with none."""
        where = f"{self.services_root / s / 'pyproject.toml'}: client {client.name}"
        scopes = list(client.scopes)
        if client.scopes_from:  # the service's own list (``module:NAME``), not a second one
            module, _, name = client.scopes_from.partition(":")
            scopes += list(getattr(importlib.import_module(module), name))
        facts = Facts({"app": app}, {})
        registration: dict[str, Any] = {
            "client_id": client.client_id,
            **({"name": client.display_name} if client.display_name else {}),
            **({"organisation": client.organisation} if client.organisation else {}),
            **({"roles": client.roles} if client.roles else {}),
            **({"scopes": scopes} if scopes else {}),
            **(
                {"redirect_uris": [facts.fill(u, where) for u in client.redirect_uris]}
                if client.redirect_uris
                else {}
            ),
            **({"municipalities": client.municipalities} if client.municipalities else {}),
        }
        if client.kind == "public":
            return {**registration, "kind": "public"}
        return {**registration, "jwks": jwks}

    @staticmethod
    def _message_peer_url(ports: dict[str, int]) -> str:
        """Where the ``message-transport`` binding sends: AKSON_MESSAGE_PEER_URL if set (a real
        exchange or your own peer), else the built-in test peer (``message_peer.py``)."""
        return (
            os.environ.get("AKSON_MESSAGE_PEER_URL") or f"http://127.0.0.1:{ports['message_peer']}"
        )

    def _render_dapr_files(self) -> None:
        ports = self.endpoints["ports"]
        otel = ""
        if os.environ.get("AKSON_OTLP_ENDPOINT"):
            endpoint = os.environ["AKSON_OTLP_ENDPOINT"].removeprefix("http://")
            otel = (
                f'    otel:\n      endpointAddress: "{endpoint}"\n      isSecure: false\n'
                "      protocol: http"
            )
        values = {
            "REDIS_ADDR": f"127.0.0.1:{ports['redis']}",
            "RUN_DIR": str(self.run_dir),
            "MESSAGE_PEER_URL": self.endpoints["message_peer"]["url"],
            "APP_IDS": "\n".join(f"  - {s}" for s in self.services),
            "OTEL_TRACING": otel,
        }
        target = self.run_dir / "dapr"
        for source in (LOCAL / "dapr" / "components").glob("*.yaml"):
            text = Template(source.read_text()).substitute(values)
            (target / "components" / source.name).write_text(text)
        # the chart's Resiliency spec, the one source (charts/akson/files/resiliency.yaml)
        spec = (ROOT / "charts" / "akson" / "files" / "resiliency.yaml").read_text()
        (target / "components" / "resiliency.yaml").write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: akson\nspec:\n"
            + "".join(f"  {line}\n" for line in spec.splitlines())
        )
        config = Template((LOCAL / "dapr" / "config.yaml").read_text()).substitute(values)
        (target / "config.yaml").write_text(config)

    def _generated_secrets(self, *names: str) -> dict[str, str]:
        existing = self.run_dir / "secrets" / "tokens.json"
        kept: dict[str, str] = json.loads(existing.read_text()) if existing.is_file() else {}
        return {name: kept.get(name) or secrets.token_urlsafe(24) for name in names}

    def _postgres(self, password: str, role_password: str) -> str:
        """Initialise (once per run folder) and define a PostgreSQL server; return its URL."""
        pg, port = postgres_bin(), self.endpoints["ports"]["postgres"]
        data = self.run_dir / "postgres"
        socket_dir = self.run_dir / "postgres-socket"
        if not (data / "PG_VERSION").exists():
            data.mkdir(exist_ok=True)
            socket_dir.mkdir(exist_ok=True)
            password_file = self.run_dir / "secrets" / "postgres-password"
            password_file.write_text(password)
            if os.geteuid() == 0:
                shutil.chown(data, "postgres")
                shutil.chown(socket_dir, "postgres")
                shutil.chown(password_file, "postgres")
            subprocess.run(
                as_database_user(
                    [
                        str(pg / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "akson",
                        "--auth=scram-sha-256",
                        f"--pwfile={password_file}",
                        "--no-sync",
                        "--encoding=UTF8",
                    ]
                ),
                check=True,
                capture_output=True,
            )
            password_file.unlink()
        self.processes["postgres"] = Process(
            "postgres",
            [
                str(pg / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(socket_dir),
                *postgres_settings(),
            ],
            dict(os.environ),
            self.run_dir / "logs" / "postgres.log",
            lambda: tcp_ok(port),
            after_start=lambda: self._postgres_ready(pg, port, password, role_password),
            user=DATABASE_USER if os.geteuid() == 0 else None,
        )
        # no credentials: FerretDB connects with each client's own, a client without is refused
        return f"postgres://127.0.0.1:{port}/postgres?pool_max_conns={FERRETDB_POOL}"

    @staticmethod
    def _postgres_ready(pg: Path, port: int, password: str, role_password: str) -> None:
        install_gin_twins(pg, port, password)
        create_app_role(pg, port, password, role_password)

    def _define_processes(self, tokens: dict[str, str]) -> None:
        logs = self.run_dir / "logs"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AKSON_")}

        def add(
            name: str, argv: list[str], healthy: Any, env: dict[str, str] | None = None
        ) -> None:
            self.processes[name] = Process(
                name, argv, {**base_env, **(env or {})}, logs / f"{name}.log", healthy
            )

        self._define_redis(add, tokens)
        self._define_ferretdb(add, tokens)
        self._define_opa(add, tokens)
        self._define_helpers(add, tokens)
        for s in self.services:
            self._define_service(add, s, tokens)

    def _define_redis(self, add: AddProcess, tokens: dict[str, str]) -> None:
        ports, tools, run = self.endpoints["ports"], self.endpoints["tools"], self.run_dir
        add(
            "redis",
            [
                tools["redis-server"],
                "--port",
                str(ports["redis"]),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                tokens["redis_password"],
                "--dir",
                str(run / "redis"),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            lambda: tcp_ok(ports["redis"]),
        )

    def _define_ferretdb(self, add: AddProcess, tokens: dict[str, str]) -> None:
        ports, tools, run = self.endpoints["ports"], self.endpoints["tools"], self.run_dir
        if DB_BACKEND == "postgresql":
            # FerretDB v1 on SQLite scans whole tables for anything but a find by _id (see the
            # benchmark); on PostgreSQL it pushes filters and indexes down.
            pg_url = self._postgres(tokens["postgres_password"], tokens["database_password"])
            backend = ["--handler=postgresql", f"--postgresql-url={pg_url}"]
        else:
            backend = ["--handler=sqlite", f"--sqlite-url=file:{run / 'ferretdb'}/"]
        add(
            "ferretdb",
            [
                tools["ferretdb"],
                *backend,
                f"--listen-addr=127.0.0.1:{ports['mongo']}",
                f"--debug-addr=127.0.0.1:{ports['ferretdb_debug']}",
                f"--state-dir={run / 'ferretdb'}",
                "--telemetry=disable",
                # above ERROR: its PostgreSQL driver logs every failed statement at ERROR with
                # its arguments and PostgreSQL's detail (the values: national ids), and failed
                # commands are dumped at WARN; the clients get the same errors
                "--log-level=error+1",
            ],
            lambda: tcp_ok(ports["mongo"]),
            # a client without credentials stays without: none from the caller's environment
            {"PGUSER": "no-credentials", "PGPASSWORD": "", "PGPASSFILE": os.devnull, **GO_GC},
        )

    def _define_opa(self, add: AddProcess, tokens: dict[str, str]) -> None:
        ports, tools = self.endpoints["ports"], self.endpoints["tools"]
        audit = self.endpoints["services"].get("audit", {}).get("app", "http://127.0.0.1:9")
        add(
            "opa",
            [
                tools["opa"],
                "run",
                "--server",
                "--skip-version-check",
                "--addr",
                f"127.0.0.1:{ports['opa']}",
                "--diagnostic-addr",
                f"127.0.0.1:{ports['opa_diagnostics']}",
                "--config-file",
                str(LOCAL / "opa" / "config.yaml"),
                "--log-level",
                "error",
                # only the enforcement points' token asks for decisions (policies/system/authz)
                "--authentication=token",
                "--authorization=basic",
                str(ROOT / "policies"),
            ],
            lambda: http_ok(f"http://127.0.0.1:{ports['opa']}/health"),
            {
                "AUDIT_URL": audit,
                "AUDIT_UPLOAD_TOKEN": tokens["audit_upload_token"],
                "AKSON_OPA_PEP_TOKEN": tokens["opa_token"],
                **GO_GC,
            },
        )

    def _define_helpers(self, add: AddProcess, tokens: dict[str, str]) -> None:
        """The development helper apps the services declare (the message exchange's stand-in
        for messaging, the development login page for identity, ...)."""
        ports = self.endpoints["ports"]
        for s, declared in self.declared.items():
            facts = self._facts(tokens).with_app(self.endpoints["services"][s]["app"])
            where = f"{self.services_root / s / 'pyproject.toml'}: process"
            for helper in declared.processes:
                if helper.unless_env and os.environ.get(helper.unless_env):
                    continue
                port = ports[helper.port]
                add(
                    helper.name,
                    _local_app(helper.module, port),
                    lambda p=port: http_ok(f"http://127.0.0.1:{p}/healthz"),
                    {k: facts.fill(v, f"{where} {helper.name}") for k, v in helper.env.items()},
                )

    def _facts(self, tokens: dict[str, str]) -> Facts:
        """What a declaration may name (``${...}``, see infra/local/declarations.py)."""
        e, ports = self.endpoints, self.endpoints["ports"]
        upstream = e["upstream"]
        fixed = {
            "fhir_base": e.get("fhir", {}).get("base", ""),
            "dev_login": e["dev_login"]["url"],
            "clients_file": e["test_client"]["clients_file"],
            "client_key_file": e["test_client"]["private_key_file"],
            "ports": json.dumps(sorted(set(ports.values()))),
            "audiences": json.dumps([s for s, d in self.declared.items() if d.audience]),
            "upstream": json.dumps(upstream),
            "upstream_issuers": json.dumps(
                [{k: v for k, v in i.items() if k != "private_key_file"} for i in upstream.values()]
            ),
            "key_publish_lead_seconds": str(KEY_PUBLISH_LEAD_SECONDS),
            "personnel_roles": json.dumps({DEV_AUDITOR_HPR: ["auditor"]}),
        }
        services, dev_clients = e["services"], e["test_client"]["dev_clients"]
        return Facts(
            fixed,
            {
                "app": lambda s: services.get(s, {}).get("app"),
                "secret": tokens.get,
                "secret_file": declarations.secret_file(self.run_dir / "secrets"),
                "port": lambda name: str(ports[name]) if name in ports else None,
                "identity": e["identity"].get,
                "client": dev_clients.get,
            },
        )

    def _service_env(self, s: str, tokens: dict[str, str]) -> dict[str, str]:
        """The environment of service ``s``'s app (its settings, AKSON_<SERVICE>_*)."""
        ports = self.endpoints["ports"]
        prefix = f"AKSON_{s.upper()}_"
        app_env = {
            f"{prefix}ENVIRONMENT": "development",
            f"{prefix}MONGO_URL": self.endpoints["mongo"]["url"],
            # FerretDB v1 loses concurrent updates of one document (akson_common.db)
            f"{prefix}MONGO_SERIALISE_WRITES": "true",
            f"{prefix}MONGO_MAX_POOL_SIZE": str(SERVICE_MONGO_POOL),
            f"{prefix}DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{ports[f'{s}_dapr_http']}",
            f"{prefix}DAPR_API_TOKEN": tokens["dapr_api_token"],
            f"{prefix}APP_API_TOKEN": tokens["app_api_token"],
            f"{prefix}OPA_URL": self.endpoints["opa"]["url"],
            f"{prefix}OPA_TOKEN": tokens["opa_token"],
            f"{prefix}JWKS_URL": self.endpoints["identity"]["jwks_uri"],
            f"{prefix}JWT_ISSUER": self.endpoints["identity"]["issuer"],
            f"{prefix}JWKS_MAX_AGE_SECONDS": str(JWKS_MAX_AGE_SECONDS),
            f"{prefix}JWKS_MIN_REFRESH_SECONDS": "1",
            f"{prefix}AUDIT_UPLOAD_TOKEN": tokens["audit_upload_token"],
            f"{prefix}PARTITION_KEY_SECRET": tokens["partition_key_secret"],
            f"{prefix}OUTBOX_SWEEP_SECONDS": "1",
            f"{prefix}OTLP_ENDPOINT": os.environ.get("AKSON_OTLP_ENDPOINT", ""),
        }
        declared = self.declared[s]
        if not declared.storage:  # no database client
            app_env = {k: v for k, v in app_env.items() if not k.startswith(f"{prefix}MONGO_")}
        facts = self._facts(tokens).with_app(self.endpoints["services"][s]["app"])
        where = f"{self.services_root / s / 'pyproject.toml'}: env"
        app_env.update({f"{prefix}{k}": facts.fill(v, where) for k, v in declared.env.items()})
        return app_env

    def _define_service(self, add: AddProcess, s: str, tokens: dict[str, str]) -> None:
        """Service ``s``: its uvicorn app and its own daprd sidecar."""
        ports, tools, run = self.endpoints["ports"], self.endpoints["tools"], self.run_dir
        app_env = self._service_env(s, tokens)
        app_port = ports[f"{s}_app"]
        add(
            f"{s}-app",
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"{s}.main:app",
                # its folder is enough: a service need not be installed to be run
                "--app-dir",
                str(self.services_root / s),
                "--host",
                "127.0.0.1",
                "--port",
                str(app_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            lambda p=app_port: http_ok(f"http://127.0.0.1:{p}/healthz"),
            app_env,
        )
        dapr_http = ports[f"{s}_dapr_http"]
        add(
            f"{s}-dapr",
            [
                tools["daprd"],
                "--mode",
                "standalone",
                "--app-id",
                s,
                "--app-port",
                str(app_port),
                "--app-protocol",
                "http",
                "--dapr-http-port",
                str(dapr_http),
                "--dapr-grpc-port",
                str(ports[f"{s}_dapr_grpc"]),
                "--dapr-internal-grpc-port",
                str(ports[f"{s}_dapr_internal"]),
                "--metrics-port",
                str(ports[f"{s}_dapr_metrics"]),
                "--dapr-listen-addresses",
                "127.0.0.1",
                "--resources-path",
                str(run / "dapr" / "components"),
                "--config",
                str(run / "dapr" / "config.yaml"),
                "--placement-host-address",
                "",
                "--scheduler-host-address",
                "",
                "--log-as-json",
                "--log-level",
                "warn",
            ],
            lambda p=dapr_http: http_ok(f"http://127.0.0.1:{p}/v1.0/healthz"),
            {
                "DAPR_API_TOKEN": tokens["dapr_api_token"],
                "APP_API_TOKEN": tokens["app_api_token"],
            },
        )

    # -- running ---------------------------------------------------------------------------
    def order(self) -> list[str]:
        """The defined processes in start order: infrastructure, then each app and its sidecar
        (anything else defined comes last)."""
        infra = ["redis", "postgres", "ferretdb", "opa"]
        helpers = [p.name for d in self.declared.values() for p in d.processes]
        apps = [name for s in self.services for name in (f"{s}-app", f"{s}-dapr")]
        known = [name for name in infra + helpers + apps if name in self.processes]
        return known + [name for name in self.processes if name not in known]

    def spawn(self, name: str) -> None:
        """Launch ``name`` (no wait): its own session, its output appended to its log."""
        process = self.processes[name]
        with process.log.open("ab") as log:
            process.popen = subprocess.Popen(
                process.argv,
                env=process.env,
                cwd=process.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=process.user,
                group=process.user,
                extra_groups=[] if process.user else None,
            )
        process.state = "starting"
        process.started_at = time.time()
        process.started_monotonic = time.monotonic()
        self._save_pids()

    def start(self, name: str, timeout: float = 60.0) -> None:
        """Start ``name``, wait until it is healthy, then supervise it."""
        process = self.processes[name]
        with self.lock:
            process.supervised = False
            self.spawn(name)
        assert process.popen is not None
        deadline = time.monotonic() + timeout
        while not process.healthy():
            if process.popen.poll() is not None:
                process.state, process.last_exit = "failed", process.popen.returncode
                self.write_state()
                raise RuntimeError(
                    f"{name} exited with {process.popen.returncode}; "
                    f"see {process.log}:\n{_tail(process.log)}"
                )
            if time.monotonic() > deadline:
                process.state = "failed"
                self.write_state()
                raise RuntimeError(
                    f"{name} not healthy after {timeout:.0f} s; see {process.log}"
                    f"\n{_tail(process.log)}"
                )
            time.sleep(0.1)
        if process.after_start is not None:
            process.after_start()
        with self.lock:
            process.state, process.supervised = "running", True
            process.backoff = BACKOFF_FIRST_SECONDS
        self.write_state()

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """Stop ``name`` on purpose: the supervisor leaves it stopped until ``start``."""
        process = self.processes[name]
        with self.lock:
            process.supervised = False
            if process.popen is None or process.popen.poll() is not None:
                process.state = "stopped"
                self.write_state()
                return
            process.state = "stopping"
        try:
            os.killpg(process.popen.pid, signal.SIGTERM)
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        # children that outlived their leader (none expected) go with the group
        _terminate_group(process.popen.pid, 1.0)
        process.state, process.last_exit = "stopped", process.popen.returncode
        self._save_pids()
        self.write_state()

    def up(self, supervise: bool = True) -> float:
        """Prepare, start everything in order, wait until every service is ready, then (unless
        ``supervise`` is false) watch every process from a supervisor thread."""
        started = time.monotonic()
        self.prepare()
        self.write_state("starting")
        try:
            for name in self.order():
                self.start(name)
            self.wait_ready()
        except BaseException as error:
            self.down()
            self.write_state("failed", error=str(error))
            raise
        if supervise:
            self.supervisor = Supervisor(self)
            self.supervisor.start()
        self.write_state("ready")
        return time.monotonic() - started

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for service, urls in self.endpoints["services"].items():
            while not http_ok(f"{urls['app']}/readyz"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service} not ready; see {self.run_dir}/logs")
                time.sleep(0.2)

    def down(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        for name in reversed(self.order()):
            if name in self.processes:
                self.stop(name)
        self.write_state("stopped")

    def status(self) -> dict[str, dict[str, Any]]:
        """Per process (in start order): pid, alive, state, started at, restarts, last exit."""
        with self.lock:
            return {name: self.processes[name].status() for name in self.order()}

    def write_state(self, status: str | None = None, **extra: Any) -> None:
        """DIR/state.json: the stack's status, who supervises it, and every process's state
        (written whole to a temporary file and renamed, so a reader never sees half)."""
        path = self.run_dir / "state.json"
        with self.lock:
            previous: dict[str, Any] = {}
            if status is None and path.is_file():
                try:
                    previous = json.loads(path.read_text())
                except ValueError:
                    previous = {}
            state = {
                "status": status or previous.get("status", "starting"),
                "supervisor_pid": os.getpid() if self.supervisor is not None else None,
                "updated_at": time.time(),
                **{k: v for k, v in previous.items() if k == "error"},
                **extra,
                "processes": self.status() if self.processes else {},
            }
            self.run_dir.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".state.{threading.get_ident()}.json")
            temporary.write_text(json.dumps(state, indent=2))
            temporary.replace(path)

    def _save_pids(self) -> None:
        with self.lock:
            pids = {
                name: p.popen.pid
                for name, p in self.processes.items()
                if p.popen is not None and p.popen.poll() is None
            }
            (self.run_dir / "pids.json").write_text(json.dumps(pids))

    def table(self) -> str:
        e = self.endpoints
        rows = [
            ("redis", f"redis://{e['redis']['address']}", "pub/sub + state (Redis Streams)"),
            ("ferretdb", e["mongo"]["address"], f"MongoDB wire protocol, {DB_BACKEND} backend"),
            ("opa", e["opa"]["url"], "POST /v1/data/akson/authz/decision"),
            ("message peer", e["message_peer"]["url"], "message-transport binding target"),
        ]
        if "fhir" in e:
            rows.append(("FHIR base", e["fhir"]["base"], "one base for every FHIR type"))
        for s, urls in e["services"].items():
            declared = self.declared.get(s)
            note = declared.note if declared is not None else declarations.DEFAULT_NOTE
            notes = Facts({"app": urls["app"]}, {}).fill(note, f"services/{s}: note")
            rows.append((s, urls["app"], notes))
            rows.append((f"{s} sidecar", urls["dapr_http"], f"gRPC {urls['dapr_grpc']}"))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'component':<{width}}  {'listens on':<28}  notes"]
        lines += [f"{a:<{width}}  {b:<28}  {c}" for a, b, c in rows]
        lines.append(f"logs: {self.run_dir}/logs   endpoints: {self.run_dir}/endpoints.json")
        return "\n".join(lines)


class Supervisor:
    """Watches every supervised process of a stack from a thread and restarts one that exits,
    with a bounded exponential backoff; each exit and restart goes to logs/supervisor.log."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.log = supervisor_logger(stack.run_dir)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="akson-supervisor", daemon=True)
        self.trimmer: StreamTrimmer | None = None

    def start(self) -> None:
        self.log.info("supervising %d processes", len(self.stack.processes))
        self._thread.start()
        # the pub/sub streams are bounded by this trimmer, never by the broker (streams.py)
        if "redis" not in self.stack.processes:
            return  # a stack without the broker (the supervisor's own tests)
        # imported here: the redis client is slow to import, and the tools that only read a run
        # folder (`make token`) need none
        from streams import DEFAULT_CAP, StreamTrimmer

        secrets_file = self.stack.run_dir / "secrets" / "tokens.json"
        self.trimmer = StreamTrimmer(
            self.stack.endpoints["redis"]["address"],
            json.loads(secrets_file.read_text())["redis_password"],
            cap=int(os.environ.get("AKSON_STREAM_CAP", DEFAULT_CAP)),
        )
        self.trimmer.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30.0)
        if self.trimmer is not None:
            self.trimmer.stop()
        self.log.info("supervision stopped")

    def _run(self) -> None:
        while not self._stopping.wait(SUPERVISE_INTERVAL_SECONDS):
            try:
                with self.stack.lock:
                    changed = [self._watch(self.stack.processes[n]) for n in self.stack.order()]
                if any(changed):
                    self.stack.write_state()
            except Exception:  # the supervisor must outlive anything one round trips over
                self.log.exception("supervision round failed")

    def _watch(self, process: Process) -> bool:
        """One look at ``process``; true when its state changed."""
        if not process.supervised or self._stopping.is_set():
            return False
        now = time.monotonic()
        if process.state in ("starting", "running"):
            code = process.popen.poll() if process.popen is not None else -1
            if code is None:
                if process.state == "starting" and process.healthy():
                    process.state = "running"
                    self.log.info("%s healthy again (pid %s)", process.name, process.popen.pid)  # type: ignore[union-attr]
                    return True
                return False
            ran = now - process.started_monotonic
            if ran >= STABLE_SECONDS:
                process.backoff = BACKOFF_FIRST_SECONDS
            process.state, process.last_exit = "exited", code
            process.restart_at = now + process.backoff
            self.log.warning(
                "%s exited with %s after %.1f s; restarting in %.1f s (see %s)",
                process.name, code, ran, process.backoff, process.log,
            )  # fmt: skip
            process.backoff = min(process.backoff * 2, BACKOFF_MAX_SECONDS)
            return True
        if process.state == "exited" and now >= process.restart_at:
            process.restarts += 1
            try:
                self.stack.spawn(process.name)
            except OSError as error:
                process.state, process.restart_at = "exited", now + process.backoff
                self.log.warning("%s could not be started: %s", process.name, error)
                process.backoff = min(process.backoff * 2, BACKOFF_MAX_SECONDS)
                return True
            self.log.warning(
                "%s restarted (pid %s, restart %d)",
                process.name, process.popen.pid, process.restarts,  # type: ignore[union-attr]
            )  # fmt: skip
            return True
        return False


def supervisor_logger(run_dir: Path) -> logging.Logger:
    """The supervisor's log, one per run folder: DIR/logs/supervisor.log."""
    log = logging.getLogger(f"akson.supervisor.{run_dir}")
    if not log.handlers:
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "logs" / SUPERVISOR_LOG)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _terminate_group(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def down_from_pids(run_dir: Path) -> int:
    """Stop whatever a previous `up` in ``run_dir`` left running."""
    pid_file = run_dir / "pids.json"
    if not pid_file.exists():
        return 0
    pids: dict[str, int] = json.loads(pid_file.read_text())
    for pid in reversed(list(pids.values())):
        _terminate_group(pid, 10.0)
    pid_file.unlink()
    return len(pids)


def mint_upstream(
    endpoints: dict[str, Any],
    who: str,
    identifier: str,
    *,
    unit: str | None = None,
    lifetime: int = 120,
    nonce: str | None = None,
) -> str:
    """A token from a development upstream issuer, as HelseID or ID-porten would hand a user
    (``nonce``: the login request it answers, as the development login page sets it)."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    upstream = endpoints["upstream"][who]
    key = RSAKey.import_key(json.loads(Path(upstream["private_key_file"]).read_text()))
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": upstream["issuer"],
        "aud": upstream["audience"],
        "sub": secrets.token_hex(16),  # upstream subjects are pseudonyms
        "iat": now,
        "exp": now + lifetime,
        upstream["subject_claim"]: identifier,
    }
    if unit is not None and upstream["unit_claim"]:
        claims[upstream["unit_claim"]] = unit
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def _is_supervisor(pid: int) -> bool:
    """Whether ``pid`` is (still) a `stack.py supervise` process, not a reused pid."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"supervise" in command and any(part.endswith(b"stack.py") for part in command)


def stop_supervisor(run_dir: Path, timeout: float = 90.0) -> bool:
    """Ask the run folder's detached supervisor to stop everything; true if there was one."""
    state = read_state(run_dir)
    pid = state.get("supervisor_pid") if state else None
    if not isinstance(pid, int) or not _is_supervisor(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_supervisor(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _is_supervisor(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def supervise(run_dir: Path) -> None:
    """Start the stack and watch it until SIGTERM/SIGINT, then stop everything (`make up` runs
    this detached; `make down` sends the SIGTERM)."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stack = Stack(run_dir=run_dir)
    log = supervisor_logger(run_dir)
    log.info("supervisor %d starting the stack in %s", os.getpid(), run_dir)
    try:
        took = stack.up()
    except BaseException as error:
        log.error("the stack did not start: %s", error)
        raise SystemExit(1) from error
    stack.write_state("ready", took_seconds=round(took, 1))
    log.info("stack ready in %.1f s", took)
    while not stopping.wait(1.0):
        pass
    log.info("stopping the stack")
    stack.write_state("stopping")
    stack.down()
    log.info("stack stopped")


def up_detached(run_dir: Path, timeout: float = 600.0) -> None:
    """Start a detached supervisor (own session) and return once the stack is ready, having
    loaded the demo population (infra/local/demo.py; AKSON_DEMO=0: none)."""
    stop_supervisor(run_dir)
    down_from_pids(run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "state.json").unlink(missing_ok=True)
    with (run_dir / "logs" / SUPERVISOR_LOG).open("ab") as output:
        supervisor = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "supervise", "--run-dir", str(run_dir)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(run_dir) or {}
        if state.get("status") == "ready":
            break
        if supervisor.poll() is not None or time.monotonic() > deadline:
            log = run_dir / "logs" / SUPERVISOR_LOG
            raise SystemExit(f"the stack did not start; see {log}:\n{_tail(log, 40)}")
        time.sleep(0.3)
    stack = Stack(run_dir=run_dir, endpoints=json.loads((run_dir / "endpoints.json").read_text()))
    print(stack.table())  # noqa: T201
    print(  # noqa: T201
        f"started in {state.get('took_seconds', 0):.1f} s, supervised by pid {supervisor.pid}"
        f" (log: {run_dir}/logs/{SUPERVISOR_LOG}); `make status` to watch, `make down` to stop"
    )
    if os.environ.get("AKSON_DEMO", "1") != "0":
        import demo  # the demo population and what to try with it (infra/local/demo.py)

        print(demo.after_up(stack.endpoints, run_dir))  # noqa: T201


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_table(run_dir: Path) -> str:
    """Every process with its pid, uptime and restarts, then where everything listens."""
    state = read_state(run_dir)
    if state is None or not (run_dir / "endpoints.json").exists():
        return f"not running (no state in {run_dir})"
    now = time.time()
    supervisor = state.get("supervisor_pid")
    watched = "supervisor gone" if not _alive(supervisor) else f"supervisor pid {supervisor}"
    updated = datetime.fromtimestamp(state.get("updated_at", 0), UTC).strftime("%H:%M:%S UTC")
    lines = [f"stack {state.get('status')} ({watched}, state of {updated})"]
    rows = [("process", "pid", "state", "uptime", "restarts", "last exit")]
    for name, process in state.get("processes", {}).items():
        recorded, alive = str(process.get("state", "?")), _alive(process.get("pid"))
        running = recorded in ("running", "starting")
        uptime = _duration(now - process["started_at"]) if running and alive else "-"
        state_text = "gone" if running and not alive else recorded
        last_exit = process.get("last_exit")
        rows.append(
            (
                name,
                str(process.get("pid") or "-"),
                state_text,
                uptime,
                str(process.get("restarts", 0)),
                "-" if last_exit is None else str(last_exit),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    stack = Stack(run_dir=run_dir, endpoints=json.loads((run_dir / "endpoints.json").read_text()))
    return "\n".join([*lines, "", stack.table()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "supervise", "mint"])
    parser.add_argument("who", nargs="?", choices=sorted(UPSTREAM))
    parser.add_argument("identifier", nargs="?", help="HPR number or national id")
    parser.add_argument("--unit", help="personnel: the unit (org number) chosen at login")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args()
    run_dir: Path = args.run_dir.resolve()
    if args.command == "mint":
        if not (args.who and args.identifier):
            parser.error("mint needs personnel|citizen and an HPR number or national id")
        if not (run_dir / "endpoints.json").exists():
            raise SystemExit(f"nothing runs in {run_dir}: start the platform with `make up`")
        endpoints = json.loads((run_dir / "endpoints.json").read_text())
        print(mint_upstream(endpoints, args.who, args.identifier, unit=args.unit))  # noqa: T201
        return
    if args.command == "down":
        supervised = stop_supervisor(run_dir)
        stopped = down_from_pids(run_dir)  # whatever a lost supervisor left behind
        print(  # noqa: T201
            ("supervisor stopped the stack; " if supervised else "")
            + f"stopped {stopped} leftover processes"
        )
        return
    if args.command == "status":
        print(status_table(run_dir))  # noqa: T201
        return
    if args.command == "supervise":
        supervise(run_dir)
        return
    up_detached(run_dir)


if __name__ == "__main__":
    main()
