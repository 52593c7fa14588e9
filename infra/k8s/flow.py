"""make k8s-test's step 6: a user's token -> a write -> a read -> the decision in audit, through
the cluster. Run in a pod of a service image (httpx, joserfc), labelled as the cluster's edge
(cluster-values.yaml lets it in to gateway, identity, master data and audit), with the case and
the import lines (infra/k8s/trust.py) in /flow and the private keys in /keys.

1. client credentials (``private_key_jwt``) as the test client; master data's NDJSON import of
   the demo population (idempotent, decided by the policy like any write)
2. an upstream personnel token (the HelseID stand-in identity trusts) exchanged for a platform
   token for the gateway, once identity's projection knows the GP at her unit
3. a DocumentReference written for a patient on her list through the FHIR base, read back
4. the auditor client's token; audit's decision log holds the policy's allow of that read (OPA
   uploaded it), and the chain verifies

Prints one line per step with its seconds; never an identifier or a token.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

FLOW, KEYS = Path("/flow"), Path("/keys")
IDENTITY = "http://akson-identity:8000"
ISSUER = "https://identity.akson.local"  # the chart's auth.jwtIssuer
MASTERDATA = "http://akson-masterdata:8000"
FHIR = "http://akson-gateway:8000/fhir/R4"
AUDIT = "http://akson-audit:8000"
FHIR_JSON = "application/fhir+json"
NOT_YET = {401, 403, 404, 409, 503}  # a projection (or OPA's upload) not caught up yet
Json = dict[str, Any]


def signed(key_file: str, claims: Json) -> str:
    key = RSAKey.import_key(json.loads((KEYS / key_file).read_text()))
    now = int(time.time())
    return jwt.encode(
        {"alg": "RS256", "kid": key.kid}, {"iat": now, "exp": now + 60, **claims}, key
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def until(
    what: str,
    send: Callable[[], httpx.Response],
    done: Callable[[httpx.Response], bool],
    seconds: float = 90.0,
    also: frozenset[int] = frozenset(),
    describe: Callable[[httpx.Response], str] = lambda a: a.text[:300],
) -> httpx.Response:
    """``send`` until ``done``; "not yet" answers (and ``also``) are tried again until then.
    ``describe``: what a failure shows of the last answer (never an identifier)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = send()
        if done(answer):
            return answer
        if answer.status_code not in NOT_YET | also | {200} or time.monotonic() > deadline:
            raise SystemExit(f"FAIL {what}: {answer.status_code} {describe(answer)}")
        time.sleep(0.5)


def token(http: httpx.Client, form: dict[str, str]) -> str:
    answer = http.post(f"{IDENTITY}/token", data=form)
    if answer.status_code != 200:
        raise SystemExit(f"FAIL token: {answer.status_code} {answer.text[:300]}")
    return str(answer.json()["access_token"])


def client_token(http: httpx.Client, client: str, key_file: str, audience: str, scope: str) -> str:
    assertion = signed(
        key_file, {"iss": client, "sub": client, "aud": f"{ISSUER}/token", "jti": uuid.uuid4().hex}
    )
    return token(
        http,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "audience": audience,
            "scope": scope,
        },
    )


def step(name: str, started: float) -> None:
    sys.stdout.write(f"  {name}: {time.monotonic() - started:.1f} s\n")
    sys.stdout.flush()


def import_master_data(http: httpx.Client, case: Json, imports: dict[str, list[Json]]) -> None:
    t = time.monotonic()
    system = client_token(http, case["client"], "client.json", "masterdata", case["client_scope"])
    for kind, records in imports.items():
        answer = http.post(
            f"{MASTERDATA}/import/{kind}",
            content="".join(json.dumps(r) + "\n" for r in records),
            headers={**bearer(system), "content-type": "application/x-ndjson"},
        )
        if answer.status_code != 200 or answer.json()["rejected"]:
            raise SystemExit(f"FAIL import {kind}: {answer.status_code} {answer.text[:300]}")
    step(f"master data imported ({sum(map(len, imports.values()))} records)", t)


def practitioner_token(http: httpx.Client, case: Json) -> dict[str, str]:
    """The GP's platform token for the gateway, by token exchange of an upstream token."""
    t = time.monotonic()
    upstream = signed(
        "helseid.json",
        {
            "iss": case["issuer"],
            "aud": case["audience"],
            "sub": secrets.token_hex(16),
            case["subject_claim"]: case["hpr_number"],
            case["unit_claim"]: case["unit"],
        },
    )
    exchange = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": upstream,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": "gateway",
    }

    def knows_unit(answer: httpx.Response) -> bool:
        if answer.status_code != 200:
            return False
        payload = answer.json()["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return bool(claims.get("unit") == case["unit"])

    # identity answers 400 (invalid_grant) until its projection of master data knows her
    answer = until(
        "token exchange",
        lambda: http.post(f"{IDENTITY}/token", data=exchange),
        knows_unit,
        also=frozenset({400}),
    )
    step("the GP's platform token (token exchange of an upstream personnel token)", t)
    return bearer(str(answer.json()["access_token"]))


def write_and_read(http: httpx.Client, case: Json, gp: dict[str, str]) -> str:
    """A DocumentReference for the patient through the FHIR base, read back: its id."""
    t = time.monotonic()
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{case['patient']}"},
        "description": f"k8s-test {secrets.token_hex(8)}",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"written through the cluster").decode(),
                }
            }
        ],
    }
    created = until(
        "create",
        lambda: http.post(
            f"{FHIR}/DocumentReference",
            content=json.dumps(note),
            headers={**gp, "content-type": FHIR_JSON},
        ),
        lambda a: a.status_code == 201,
    )
    location = created.headers.get("location", "").split("/_history/")[0]
    note_id = location.rsplit("DocumentReference/", 1)[1] if location else created.json()["id"]
    step("a DocumentReference written through the FHIR base (201)", t)

    t = time.monotonic()
    read = http.get(f"{FHIR}/DocumentReference/{note_id}", headers=gp)
    if read.status_code != 200 or read.json().get("description") != note["description"]:
        raise SystemExit(f"FAIL read: {read.status_code} {read.text[:300]}")
    step("read back (200, the same description)", t)
    return str(note_id)


def audited(http: httpx.Client, case: Json, note_id: str, written_at: float) -> None:
    """The read's allow in audit's decision log (OPA's upload), and the chain intact."""
    t = time.monotonic()
    auditor = bearer(client_token(http, case["auditor"], "auditor.json", "audit", ""))
    query = {"patient": case["patient"], "resource_type": "DocumentReference", "_count": "500"}

    def logged(answer: httpx.Response) -> bool:
        return answer.status_code == 200 and any(
            d["resource_id"] == note_id
            and d["action"] == "read"
            and d["allow"]
            and d["hpr"] == case["hpr_number"]
            for d in answer.json()["items"]
        )

    until(
        "the read's decision in audit",
        lambda: http.get(f"{AUDIT}/audit/decisions", params=query, headers=auditor),
        logged,
        seconds=120.0,
        describe=lambda a: json.dumps(
            [
                (d["action"], d["allow"], d["actor_kind"], d["reasons"])
                for d in (a.json()["items"] if a.status_code == 200 else [])
                if d["resource_id"] == note_id
            ]
        ),
    )
    step(f"the read's decision in audit, {time.time() - written_at:.1f} s after the write", t)
    verify = http.get(f"{AUDIT}/audit/chain/verify", headers=auditor, timeout=120.0)
    if verify.status_code != 200 or not verify.json()["intact"]:
        raise SystemExit(f"FAIL verify: {verify.status_code} {verify.text[:300]}")
    step(f"the chain verifies ({verify.json()['checked']} records)", t)


def main() -> int:
    case: Json = json.loads((FLOW / "case.json").read_text())
    imports: dict[str, list[Json]] = json.loads((FLOW / "imports.json").read_text())
    http = httpx.Client(timeout=15.0)
    import_master_data(http, case, imports)
    gp = practitioner_token(http, case)
    written_at = time.time()
    note_id = write_and_read(http, case, gp)
    audited(http, case, note_id, written_at)
    return 0


if __name__ == "__main__":
    sys.exit(main())
