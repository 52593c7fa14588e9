"""JSON schemas for kubeconform, prepared offline.

Kubernetes: the strict schemas shipped in the `kubernetes-validate` package, with their `$id`
dropped and `$ref`s made relative, so kubeconform resolves them from disk, never the network.
Dapr: derived from the CRDs in the pinned Dapr Go module (the same module `daprd` is built from),
made strict like kubeconform's openapi2jsonschema: objects with properties refuse unknown fields.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.35.0"
DAPR_MODULE = "github.com/dapr/dapr"

JSON = dict[str, Any]


def kubernetes_schemas(target: Path) -> Path:
    """Write the strict Kubernetes schemas of KUBERNETES_VERSION into target; returns target."""
    source = Path(str(files("kubernetes_validate"))) / "kubernetes-json-schema"
    source /= f"v{KUBERNETES_VERSION}-local-strict"
    target.mkdir(parents=True, exist_ok=True)
    for schema_file in source.glob("*.json"):
        text = schema_file.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
        schema = json.loads(text)
        schema.pop("$id", None)
        (target / schema_file.name).write_text(json.dumps(schema))
    return target


def pinned_module(tool: str, module: str, field: str = "Version") -> str:
    """A field (Version, Dir) of a module as pinned in infra/tools/<tool>/go.mod; downloads it
    into the module cache when missing (as build.sh does)."""
    download = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=ROOT / "infra" / "tools" / tool,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin"},
    )
    value: str = json.loads(download.stdout)[field]
    return value


def dapr_crd_dir() -> Path:
    """charts/dapr/crds of the Dapr module that daprd is built from (infra/tools/daprd)."""
    return Path(pinned_module("daprd", DAPR_MODULE, "Dir")) / "charts" / "dapr" / "crds"


def dapr_schemas(crd_dir: Path, target: Path) -> Path:
    """One `<kind>_<version>.json` per served version of every Dapr CRD, written into target."""
    target.mkdir(parents=True, exist_ok=True)
    for crd_file in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(crd_file.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            kind = crd["spec"]["names"]["kind"].lower()
            for version in crd["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                (target / f"{kind}_{version['name']}.json").write_text(json.dumps(schema))
    return target


def strict(node: JSON) -> JSON:
    """OpenAPI v3 (structural) schema to JSON schema that refuses fields it does not declare."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["properties"] = {name: strict(child) for name, child in out["properties"].items()}
        if "additionalProperties" not in out and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = strict(out["items"])
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in node:
            out[combinator] = [strict(child) for child in node[combinator]]
    return out
