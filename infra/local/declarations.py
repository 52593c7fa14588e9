"""What a service needs from the local runner, declared in the service's own folder.

The runner (stack.py) knows no service by name: each one may carry a ``[tool.akson.local]``
table in its ``pyproject.toml``, and a service without one gets the defaults (a database
client, a token audience at identity, an app and its sidecar, the shared settings)::

    [tool.akson.local]
    storage = false                 # no database client (FerretDB's pool does not count it)
    issues_tokens = true            # the token service: the others verify its tokens (JWKS)
    audience = false                # no API of its own: identity issues no token for it
    fhir_base = "/fhir/R4"          # this service is the platform's one FHIR base
    note = "open ${app}/ in a browser"   # the `make up` table's note (default: its OpenAPI)

    [tool.akson.local.env]          # more of its settings (AKSON_<SERVICE>_<NAME>)
    AUDIT_URL = "${app.audit}"

    [[tool.akson.local.clients]]    # clients registered at identity (development keys)
    name = "hub"                    # endpoints.json's test_client.dev_clients key
    client_id = "akson-dev-hub"
    scopes = ["DeviceMessage.write"]

    [[tool.akson.local.processes]]  # a development helper app of infra/local (uvicorn)
    name = "message-peer"
    module = "message_peer"         # infra/local/message_peer.py's ``app``
    port = "message_peer"           # the runner's port of that name
    unless_env = "AKSON_MESSAGE_PEER_URL"   # not started when this variable is set
    env = { MESSAGE_PEER_REPLY_URL = "${app}/messages/inbound" }

Values may name what only the runner knows, as ``${...}`` (:class:`Facts`): ``app`` (this
service's URL), ``app.<service>``, ``secret.<name>`` (a generated token), ``secret_file.<name>``
(a file of one generated secret, made once per run folder), ``port.<name>``, ``ports`` (every
port of the stack, a JSON list), ``fhir_base``, ``identity.<issuer|jwks_uri|token_endpoint>``,
``dev_login``, ``clients_file``, ``client_key_file`` (the development clients' private key),
``audiences`` and ``upstream_issuers`` (JSON). A name the runner does not know is an error
that names the file.
"""

from __future__ import annotations

import re
import secrets
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_NOTE = "OpenAPI ${app}/docs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalProcess(_Strict):
    """A development helper app the service needs next to it (``infra/local/<module>.py``)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    module: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    port: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    unless_env: str = ""
    env: dict[str, str] = {}


class Client(_Strict):
    """A client registered at identity for this service (its keys: the development pair)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    client_id: str
    kind: str = "system"
    display_name: str = ""
    organisation: str = ""
    scopes: list[str] = []
    # ``module:NAME``: the scopes are that list of the service's own code (one list, not two)
    scopes_from: str = ""
    roles: list[str] = []
    redirect_uris: list[str] = []
    municipalities: list[str] = []


class Declaration(_Strict):
    """One service's ``[tool.akson.local]``."""

    name: str
    storage: bool = True
    audience: bool = True
    issues_tokens: bool = False
    fhir_base: str = ""
    note: str = DEFAULT_NOTE
    env: dict[str, str] = {}
    clients: list[Client] = []
    processes: list[LocalProcess] = []

    @property
    def prefix(self) -> str:
        return f"AKSON_{self.name.upper()}_"


def read(folder: Path) -> Declaration:
    """The declaration in ``folder``'s pyproject.toml (the defaults when it has none)."""
    pyproject = folder / "pyproject.toml"
    table: dict[str, Any] = {}
    if pyproject.is_file():
        with pyproject.open("rb") as f:
            table = tomllib.load(f).get("tool", {}).get("akson", {}).get("local", {})
    try:
        return Declaration(name=folder.name, **table)
    except ValidationError as e:
        raise SystemExit(f"{pyproject}: [tool.akson.local] is not valid:\n{e}") from None


class Value(Template):
    """``${name}`` or ``${kind.name}``; ``$$`` is a literal ``$``."""

    idpattern = r"(?a:[a-z][a-z0-9_]*(?:\.[a-z0-9_-]+)?)"
    flags = re.NOFLAG


class Facts(Mapping[str, str]):
    """What the runner knows, looked up by the names of :class:`Value` (lazily: a secret file
    is made only when a declaration names it)."""

    def __init__(
        self, fixed: Mapping[str, str], kinds: Mapping[str, Callable[[str], str | None]]
    ) -> None:
        self.fixed, self.kinds = fixed, kinds

    def __getitem__(self, key: str) -> str:
        if key in self.fixed:
            return self.fixed[key]
        kind, _, name = key.partition(".")
        lookup = self.kinds.get(kind)
        found = lookup(name) if lookup is not None and name else None
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.fixed)

    def __len__(self) -> int:
        return len(self.fixed)

    def fill(self, text: str, where: str) -> str:
        try:
            return Value(text).substitute(self)
        except KeyError as e:
            raise SystemExit(f"{where}: the runner knows no ${{{e.args[0]}}}") from None
        except ValueError as e:
            raise SystemExit(f"{where}: {e}") from None

    def with_app(self, url: str) -> Facts:
        return Facts({**self.fixed, "app": url}, self.kinds)


def secret_file(folder: Path) -> Callable[[str], str | None]:
    """``secret_file.<name>``: a file of one generated secret under ``folder`` (mode 0600),
    made once: a second run on the same folder keeps it."""

    def lookup(name: str) -> str | None:
        if not re.fullmatch(r"[a-z0-9-]+", name):
            return None
        path = folder / name
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return str(path)

    return lookup
