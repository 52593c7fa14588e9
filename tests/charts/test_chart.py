"""charts/akson: lint, render every scenario, validate strictly, check the manifest policies.

All offline: helm, kubeconform and opa are the pinned builds from infra/tools, the Kubernetes
schemas come from the kubernetes-validate package, the Dapr schemas from Dapr's own CRDs.
"""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import schemas
from tests.charts.conftest import CHART, ROOT, SCENARIOS, Rendered, Tools

BAD_VALUES = sorted((Path(__file__).parent / "bad_values").glob("*.yaml"))
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/*/main.py"))
# the console: web pages over the others' APIs; no database, no sidecar, one replica (its
# sessions are in memory), so no HorizontalPodAutoscaler
CONSOLE = "console"
PLATFORM_SERVICES = [s for s in SERVICES if s != CONSOLE]


def test_scenarios_exist() -> None:
    assert len(SCENARIOS) >= 3


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_helm_lint_is_clean(tools: Tools, values: Path) -> None:
    lint = subprocess.run(
        [str(tools.helm), "lint", "--strict", str(CHART), "--values", str(values)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "[WARNING]" not in lint.stdout and "[ERROR]" not in lint.stdout, lint.stdout


def test_manifests_validate_strictly(
    tools: Tools, rendered: list[Rendered], schema_dirs: tuple[Path, Path]
) -> None:
    kubernetes, dapr = schema_dirs
    result = subprocess.run(
        [
            str(tools.kubeconform),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            schemas.KUBERNETES_VERSION,
            "-schema-location",
            f"{kubernetes}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            "-schema-location",
            f"{dapr}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            *[str(r.path) for r in rendered],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(result.stdout)
    problems = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert result.returncode == 0 and not problems, problems or result.stderr
    summary = report["summary"]
    assert summary["valid"] == sum(len(r.manifests) for r in rendered)
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0


def _deny(tools: Tools, manifests: list[dict[str, Any]], tmp_path: Path) -> list[str]:
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps({"manifests": manifests}))
    result = subprocess.run(
        [str(tools.opa), "eval", "--format", "json", "--data", str(ROOT / "policies")]
        + ["--input", str(input_file), "data.manifests.deny"],
        capture_output=True,
        text=True,
        check=True,
    )
    denied: list[str] = json.loads(result.stdout)["result"][0]["expressions"][0]["value"]
    return denied


def test_manifest_policies_pass(tools: Tools, rendered: list[Rendered], tmp_path: Path) -> None:
    for scenario in rendered:
        assert _deny(tools, scenario.manifests, tmp_path) == [], scenario.scenario


def test_manifest_policies_catch_a_plaintext_secret(tools: Tools, tmp_path: Path) -> None:
    values = tmp_path / "plaintext.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "components": {
                    "pubsub": {
                        "type": "pubsub.redis",
                        "version": "v1",
                        "metadata": [{"name": "redisPassword", "value": "hunter2"}],
                    }
                }
            }
        )
    )
    render = tools.helm_template("--values", str(values))
    assert render.returncode == 0, render.stderr
    manifests = [m for m in yaml.safe_load_all(render.stdout) if m]
    assert _deny(tools, manifests, tmp_path) == [
        'Component/pubsub: metadata "redisPassword" must be a secretKeyRef'
    ]


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda p: p.name)
def test_bad_values_are_refused_with_a_clear_message(tools: Tools, values: Path) -> None:
    expected = values.read_text().splitlines()[0].removeprefix("# expect: ")
    render = tools.helm_template("--values", str(values))
    assert render.returncode != 0
    assert expected in render.stderr, render.stderr


def test_every_service_is_rendered_with_its_resources(rendered: list[Rendered]) -> None:
    default = next(r for r in rendered if r.scenario == "default-values.yaml")
    expected = {f"akson-{name}" for name in [*SERVICES, "opa"]}
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
        assert {m["metadata"]["name"] for m in default.of_kind(kind)} == expected, kind
    assert {m["metadata"]["name"] for m in default.of_kind("NetworkPolicy")} == expected
    scaled = {m["metadata"]["name"] for m in default.of_kind("HorizontalPodAutoscaler")}
    assert scaled == expected - {f"akson-{CONSOLE}"}
    app_ids = {
        d["spec"]["template"]["metadata"].get("annotations", {}).get("dapr.io/app-id")
        for d in default.of_kind("Deployment")
    }
    assert app_ids == {*PLATFORM_SERVICES, None}


def test_a_services_volumes_are_its_configmaps_read_only(rendered: list[Rendered]) -> None:
    """``volumes``: a ConfigMap mounted read-only into that service's container only (identity's
    upstream JWKS and clients file on the cluster of infra/k8s)."""
    scenario = next(r for r in rendered if r.scenario == "all-services-values.yaml")
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in scenario.of_kind("Deployment")
    }
    identity = pods["akson-identity"]
    assert {"name": "trust", "configMap": {"name": "akson-identity-trust"}} in identity["volumes"]
    mounts = identity["containers"][0]["volumeMounts"]
    assert {"name": "trust", "mountPath": "/etc/akson/trust", "readOnly": True} in mounts
    others = [n for n, pod in pods.items() if n != "akson-identity"]
    assert others and all(
        all(v["name"] != "trust" for v in pods[n].get("volumes", [])) for n in others
    )


def test_a_new_service_is_a_values_entry(tools: Tools, tmp_path: Path) -> None:
    """Issue 22 (the runner's side: tests/integration/test_a_new_service.py): one entry under
    `services:` renders every object a service has, and the token service issues tokens for it
    (its AUDIENCES are derived, not a second list to edit)."""
    values = tmp_path / "throwaway.yaml"
    values.write_text(yaml.safe_dump({"services": {"throwaway": {}}}))
    render = tools.helm_template("--values", str(values))
    assert render.returncode == 0, render.stderr
    manifests = [m for m in yaml.safe_load_all(render.stdout) if m]
    kinds = {m["kind"] for m in manifests if m["metadata"]["name"] == "akson-throwaway"}
    assert kinds == {
        "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy",
        "HorizontalPodAutoscaler",
    }  # fmt: skip
    deployment = next(
        m for m in manifests
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "akson-throwaway"
    )  # fmt: skip
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["dapr.io/app-id"] == "throwaway"
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert {"AKSON_THROWAWAY_MONGO_URL", "AKSON_THROWAWAY_OPA_TOKEN"} <= env

    def audiences(manifests: list[dict[str, Any]]) -> list[str]:
        identity = next(
            m for m in manifests
            if m["kind"] == "Deployment" and m["metadata"]["name"] == "akson-identity"
        )  # fmt: skip
        env = identity["spec"]["template"]["spec"]["containers"][0]["env"]
        found = [e["value"] for e in env if e["name"] == "AKSON_IDENTITY_AUDIENCES"]
        assert len(found) == 1, env
        return list(json.loads(found[0]))

    plain = tools.helm_template()
    assert plain.returncode == 0, plain.stderr
    before = audiences([m for m in yaml.safe_load_all(plain.stdout) if m])
    assert sorted(before) == sorted(s for s in SERVICES if s != CONSOLE)  # no API: no audience
    assert sorted(audiences(manifests)) == sorted([*before, "throwaway"])
    assert _deny(tools, manifests, tmp_path) == []  # the manifest policies hold for it too


def test_the_locks_secrets_are_references_given_to_every_service(
    tools: Tools, rendered: list[Rendered]
) -> None:
    """Issue 13: every service asks OPA with the enforcement points' token and hashes partition
    keys with the deployment's key; identity seals its signing keys with a KEK; OPA takes the
    PEP token and runs with token authentication and its system.authz policy."""
    default = next(r for r in rendered if r.scenario == "default-values.yaml")
    deployments = {d["metadata"]["name"]: d for d in default.of_kind("Deployment")}

    def secret_env(name: str) -> dict[str, str]:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"][:1]
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if "valueFrom" in e
        }

    for service in SERVICES:
        prefix = f"AKSON_{service.upper()}_"
        env = secret_env(f"akson-{service}")
        assert env[f"{prefix}OPA_TOKEN"] == "akson-opa-token", service
        assert env[f"{prefix}PARTITION_KEY_SECRET"] == "akson-partition-key", service
        if service != CONSOLE:
            assert env[f"{prefix}MONGO_URL"] == "akson-mongodb", service
    assert "AKSON_CONSOLE_MONGO_URL" not in secret_env(f"akson-{CONSOLE}")
    console = deployments[f"akson-{CONSOLE}"]["spec"]["template"]["spec"]["containers"][0]
    plain = {e["name"]: e.get("value") for e in console["env"]}
    assert plain["AKSON_CONSOLE_AUDIT_URL"] == "http://akson-audit.akson.svc.cluster.local:8000"
    assert plain["AKSON_CONSOLE_CONSENT_URL"].startswith("http://akson-consent.")
    assert plain["AKSON_CONSOLE_IDENTITY_URL"].startswith("http://akson-identity.")
    assert deployments[f"akson-{CONSOLE}"]["spec"]["replicas"] == 1
    assert secret_env("akson-identity")["AKSON_IDENTITY_KEY_ENCRYPTION_KEY"] == "akson-identity-kek"
    # a service may have its own database user: its own connection string Secret
    render = tools.helm_template(
        "--show-only", "templates/deployment.yaml",
        "--set", "secrets.journalMongodb.name=akson-mongodb-journal",
        "--set", "secrets.journalMongodb.key=connection-string",
        "--set", "services.journal.mongodbSecret=journalMongodb",
    )  # fmt: skip
    assert render.returncode == 0, render.stderr
    (journal,) = [
        m for m in yaml.safe_load_all(render.stdout)
        if m and m["kind"] == "Deployment" and m["metadata"]["name"] == "akson-journal"
    ]  # fmt: skip
    container = journal["spec"]["template"]["spec"]["containers"][0]
    journal_env = {e["name"]: e for e in container["env"]}
    journal_url = journal_env["AKSON_JOURNAL_MONGO_URL"]["valueFrom"]["secretKeyRef"]
    assert journal_url["name"] == "akson-mongodb-journal"
    assert secret_env("akson-opa")["AKSON_OPA_PEP_TOKEN"] == "akson-opa-token"
    opa_args = deployments["akson-opa"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--authentication=token", "--authorization=basic"} <= set(opa_args)
    packed = CHART / "files" / "policies" / "system" / "authz" / "authz.rego"
    assert "package system.authz" in packed.read_text()


def test_components_are_scoped_to_their_users(rendered: list[Rendered]) -> None:
    everything = next(r for r in rendered if r.scenario == "all-services-values.yaml")
    scopes = {c["metadata"]["name"]: c["scopes"] for c in everything.of_kind("Component")}
    assert "statestore" not in scopes  # no service keeps Dapr state
    assert scopes["message-transport"] == ["messaging"]
    assert scopes["exports"] == ["integrations"]
    assert set(scopes["pubsub"]) >= set(PLATFORM_SERVICES)
    default = next(r for r in rendered if r.scenario == "default-values.yaml")
    # by default only what the default services list: pubsub, messaging's transport, exports
    components = {c["metadata"]["name"]: c["scopes"] for c in default.of_kind("Component")}
    assert sorted(components) == ["exports", "message-transport", "pubsub"]
    assert components["message-transport"] == ["messaging"]


# components-contrib 1.18.3 (Redis): the metadata that takes only bare milliseconds. A duration
# string is dropped silently and the default used instead ("5s" meant 15 s: make chaos found a
# restarted sidecar's backlog coming back 200 entries every 15 s; dapr/docs#5324).
MILLISECONDS_ONLY = {"pubsub.redis": ["redeliverInterval"]}


def test_the_resiliency_is_the_one_the_local_stack_runs(rendered: list[Rendered]) -> None:
    """One source: the chart renders files/resiliency.yaml, which stack.py also writes."""
    default = next(r for r in rendered if r.scenario == "default-values.yaml")
    (resiliency,) = default.of_kind("Resiliency")
    source = yaml.safe_load((CHART / "files" / "resiliency.yaml").read_text())
    assert resiliency["spec"] == source
    assert source["targets"]["components"]["pubsub"]["inbound"]["retry"] == "deliver"
    assert source["policies"]["retries"]["deliver"]["maxRetries"] == -1


def test_millisecond_only_metadata_is_given_in_milliseconds(rendered: list[Rendered]) -> None:
    components = [c for r in rendered for c in r.of_kind("Component")]
    components += [
        c
        for path in (ROOT / "infra" / "local" / "dapr" / "components").glob("*.yaml")
        for c in yaml.safe_load_all(path.read_text().replace("${APP_IDS}", ""))
        if c and c.get("kind") == "Component"
    ]
    checked = 0
    for component in components:
        for item in component["spec"].get("metadata", []):
            if item["name"] in MILLISECONDS_ONLY.get(component["spec"]["type"], []):
                assert re.fullmatch(r"\d+", str(item["value"])), (component["metadata"], item)
                checked += 1
    assert checked >= 2  # the chart's and the local pubsub both set it


def test_helm_test_hook_asks_every_service_for_readiness(rendered: list[Rendered]) -> None:
    for scenario in rendered:
        (hook,) = scenario.of_kind("Pod")
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
        script = hook["spec"]["containers"][0]["args"][0]
        for deployment in scenario.of_kind("Deployment"):
            name = deployment["metadata"]["name"]
            if name != "akson-opa":
                assert re.search(rf"http://{name}:\d+/readyz", script), (scenario.scenario, name)


def test_packed_policies_are_current(tmp_path: Path) -> None:
    packed = tmp_path / "policies"
    subprocess.run(
        ["make", "-s", "--no-print-directory", "chart-policies", f"CHART_POLICIES={packed}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    in_chart = CHART / "files" / "policies"
    stale = _differences(filecmp.dircmp(packed, in_chart))
    assert not stale, f"charts/akson/files/policies is stale ({stale}): run `make chart-policies`"


def _differences(comparison: filecmp.dircmp[str]) -> list[str]:
    found = [*comparison.left_only, *comparison.right_only, *comparison.diff_files]
    for sub in comparison.subdirs.values():
        found += _differences(sub)
    return found


def test_opa_image_is_the_pinned_opa() -> None:
    pinned = schemas.pinned_module("opa", "github.com/open-policy-agent/opa")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["opa"]["workload"]["image"]["ref"].endswith(f":{pinned.removeprefix('v')}-static")


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [p for key, child in node.items() for p in _leaf_paths(child, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def _covers(param: str, path: str) -> bool:
    return path == param or path.startswith(f"{param}.")


def test_every_value_is_documented() -> None:
    """Bitnami style: every value has a `## @param`; an [object] param covers its insides."""
    text = (CHART / "values.yaml").read_text()
    params = set(re.findall(r"^\s*## @param ([\w.-]+)", text, flags=re.MULTILINE))
    paths = _leaf_paths(yaml.safe_load(text))
    assert [path for path in paths if not any(_covers(p, path) for p in params)] == []
    assert [p for p in params if not any(_covers(p, path) for path in paths)] == []


def test_dockerfile_lints_clean() -> None:
    hadolint = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "hadolint"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert hadolint.returncode == 0, hadolint.stdout + hadolint.stderr


def test_the_gateway_may_invoke_only_the_fhir_routes_of_the_owners(
    rendered: list[Rendered],
) -> None:
    """Issue 17: the one FHIR base calls the owners by Dapr service invocation: the access
    control allows the gateway's app id the /fhir/R4 routes only, and the NetworkPolicies let
    its sidecar reach exactly the owners' sidecars (nobody else may invoke anyone)."""
    default = next(r for r in rendered if r.scenario == "default-values.yaml")
    (configuration,) = default.of_kind("Configuration")
    control = configuration["spec"]["accessControl"]
    assert control["defaultAction"] == "deny"
    # the gateway, and welfare writing into the journal as a system: /fhir/R4 routes only
    by_app = {policy["appId"]: policy for policy in control["policies"]}
    assert set(by_app) == {"gateway", "welfare"}
    for policy in by_app.values():
        assert policy["defaultAction"] == "deny"
        assert [o["name"] for o in policy["operations"]] == ["/fhir/R4/**"]
    policies = {p["metadata"]["name"]: p["spec"] for p in default.of_kind("NetworkPolicy")}
    owners = {"masterdata", "consent", "journal", "messaging"}

    def invokers(name: str) -> set[str]:
        return {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in policies[f"akson-{name}"]["ingress"]
            if rule["ports"][0]["port"] == 50002
            for peer in rule["from"]
        }

    for name in SERVICES:
        expected = {"gateway"} if name in owners else set()
        assert invokers(name) == expected | ({"welfare"} if name == "journal" else set()), name
    reached = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in policies["akson-gateway"]["egress"]
        if rule.get("ports", [{}])[0].get("port") == 50002
        for peer in rule["to"]
    }
    assert reached == owners
