"""Who identity trusts on the single-node cluster, and what make k8s-test's step 6 needs.

    python infra/k8s/trust.py DIR

Writes, once (an existing key is kept; the rest is rewritten from it each time):

- ``DIR/keys/*.json``: three RSA private JWKs (0600, root's, never in a ConfigMap): an upstream
  personnel issuer (a HelseID stand-in), a system client allowed master data's imports and an
  auditor client (role auditor);
- ``DIR/identity/``: what identity mounts (ConfigMap ``akson-identity-trust``, platform.sh):
  ``helseid-jwks.json`` (the issuer's public key, cluster-values.yaml's ``UPSTREAM_ISSUERS``
  names it) and ``clients.json`` (the two clients' registrations with their public keys);
- ``DIR/values.yaml``: identity's values for them (akson.sh passes it after cluster-values.yaml):
  the upstream issuer, the clients file and the ConfigMap's mount;
- ``DIR/flow/``: the step's case (``case.json``: the demo GP, her unit, a patient on her list)
  and master data's import lines (``imports.json``, the demo population of infra/local/demo.json).

The issuer's claims are HelseID's (infra/local/stack.py's UPSTREAM); only the issuer URL and the
keys are the cluster's own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))

from demo import IMPORTS, Demo  # noqa: E402
from stack import UPSTREAM, UPSTREAM_AUDIENCE  # noqa: E402

ISSUER = "https://helseid.k8s.akson.local"
MOUNT = "/etc/akson/trust"
CLIENT = "akson-k8s-test"
AUDITOR = "akson-k8s-auditor"
# the auditor's organisation: the demo municipality Bergen
AUDITOR_ORGANISATION = "310000019"


def key(path: Path, kid: str) -> RSAKey:
    """The private key at ``path``, made once."""
    if not path.exists():
        made = RSAKey.generate_key(
            2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
        )
        path.touch(mode=0o600)
        path.write_text(json.dumps(made.as_dict(private=True)))
    return RSAKey.import_key(json.loads(path.read_text()))


def public(k: RSAKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False)]}


def write(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def main(root: Path) -> None:
    for sub in ("keys", "identity", "flow"):
        (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    upstream = key(root / "keys" / "helseid.json", "helseid-k8s-1")
    client = key(root / "keys" / "client.json", f"{CLIENT}-1")
    auditor = key(root / "keys" / "auditor.json", f"{AUDITOR}-1")

    write(root / "identity" / "helseid-jwks.json", public(upstream))
    write(
        root / "identity" / "clients.json",
        [
            {"client_id": CLIENT, "jwks": public(client), "scopes": list(IMPORTS.values())},
            {
                "client_id": AUDITOR,
                "jwks": public(auditor),
                "organisation": AUDITOR_ORGANISATION,
                "roles": ["auditor"],
            },
        ],
    )

    personnel = UPSTREAM["personnel"]
    issuer = {
        **personnel,
        "issuer": ISSUER,
        "audience": UPSTREAM_AUDIENCE,
        "jwks_file": f"{MOUNT}/helseid-jwks.json",
    }
    identity = {
        "env": {"UPSTREAM_ISSUERS": json.dumps([issuer]), "CLIENTS_FILE": f"{MOUNT}/clients.json"},
        "volumes": [
            {"name": "trust", "mountPath": MOUNT, "configMap": {"name": "akson-identity-trust"}}
        ],
    }
    write(root / "values.yaml", {"services": {"identity": identity}})

    demo = Demo.read()
    gp = demo.persona("gp")
    patient = next(
        r["patient"] for r in demo.data["care_relations"] if r["practitioner"] == gp["hpr_number"]
    )
    write(
        root / "flow" / "case.json",
        {
            "issuer": ISSUER,
            "audience": UPSTREAM_AUDIENCE,
            "subject_claim": personnel["subject_claim"],
            "unit_claim": personnel["unit_claim"],
            "hpr_number": gp["hpr_number"],
            "unit": gp["unit"],
            "patient": patient,
            "client": CLIENT,
            "client_scope": " ".join(IMPORTS.values()),
            "auditor": AUDITOR,
        },
    )
    write(root / "flow" / "imports.json", demo.import_records())
    sys.stdout.write(f"trust: keys, identity's ConfigMap files and the flow's case in {root}\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
