"""Pinned tools and the chart rendered once per scenario (charts/akson/ci/*-values.yaml)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import schemas

ROOT = schemas.ROOT
CHART = ROOT / "charts" / "akson"
SCENARIOS = sorted(CHART.glob("ci/*-values.yaml"))
NAMESPACE = "akson"


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubeconform: Path
    opa: Path

    def helm_template(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`helm template akson charts/akson` with extra arguments; never raises."""
        command = [str(self.helm), "template", "akson", str(CHART), "--namespace", NAMESPACE]
        command += ["--kube-version", schemas.KUBERNETES_VERSION, *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Rendered:
    scenario: str
    path: Path
    manifests: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]


@pytest.fixture(scope="session")
def tools() -> Tools:
    built = subprocess.run(
        [str(ROOT / "infra" / "tools" / "build.sh"), "helm", "kubeconform", "opa"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths = dict(line.split(" ", 1) for line in built.splitlines())
    return Tools(Path(paths["helm"]), Path(paths["kubeconform"]), Path(paths["opa"]))


@pytest.fixture(scope="session")
def rendered(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> list[Rendered]:
    """Every scenario rendered (with the helm test hook); a render error fails every test."""
    out_dir = tmp_path_factory.mktemp("rendered")
    result = []
    for values in SCENARIOS:
        render = tools.helm_template("--values", str(values))
        assert render.returncode == 0, f"{values.name}: {render.stderr}"
        path = out_dir / values.name
        path.write_text(render.stdout)
        manifests = [m for m in yaml.safe_load_all(render.stdout) if m]
        result.append(Rendered(values.name, path, manifests))
    return result


@pytest.fixture(scope="session")
def schema_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("schemas")
    kubernetes = schemas.kubernetes_schemas(base / "kubernetes")
    dapr = schemas.dapr_schemas(schemas.dapr_crd_dir(), base / "dapr")
    return kubernetes, dapr
