"""The OPA the chart deploys, run here: the pinned opa binary with the rendered ConfigMaps laid
out as the pod mounts them, with the pod's own arguments. It must serve the packed policies to
the enforcement points' token only (and nothing to anyone else) and upload masked decision logs
to audit's path with the bearer token from the environment (Secrets in the cluster).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack import free_port, http_ok

from tests.charts.conftest import Tools

UPLOAD_TOKEN = "test-upload-token"
PEP_TOKEN = "test-pep-token"


class AuditSink(BaseHTTPRequestHandler):
    """Stands in for the audit service: records every upload (path, auth header, events)."""

    uploads: list[tuple[str, str, list[dict[str, Any]]]] = []

    def do_POST(self) -> None:  # the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.uploads.append((self.path, self.headers.get("Authorization", ""), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def audit_sink() -> Iterator[str]:
    AuditSink.uploads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuditSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _lay_out_opa_pod(tools: Tools, root: Path) -> tuple[list[str], dict[str, Any]]:
    """Render OPA's ConfigMaps and write them as the Deployment mounts them (items -> paths);
    return the container's arguments (its mount paths under ``root``) and its env entries."""
    render = tools.helm_template(
        "--show-only", "templates/opa.yaml", "--show-only", "templates/deployment.yaml",
        "--set", "opa.decisionLogs.minDelaySeconds=1,opa.decisionLogs.maxDelaySeconds=1",
    )  # fmt: skip
    assert render.returncode == 0, render.stderr
    manifests = [m for m in yaml.safe_load_all(render.stdout) if m]
    config_maps = {m["metadata"]["name"]: m["data"] for m in manifests if m["kind"] == "ConfigMap"}
    (opa,) = [
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "akson-opa"
    ]
    pod = opa["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    for volume in pod["volumes"]:
        if "configMap" not in volume:
            continue
        data = config_maps[volume["configMap"]["name"]]
        items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
        # as the kubelet lays a ConfigMap volume out: the files under ..<timestamp>/, a ..data
        # symlink to it, and a symlink per top-level entry into ..data
        mount = root / mounts[volume["name"]].lstrip("/")
        for item in items:
            target = mount / "..2026_01_01_00_00_00.000000001" / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
        (mount / "..data").symlink_to("..2026_01_01_00_00_00.000000001")
        for top in {item["path"].split("/")[0] for item in items}:
            (mount / top).symlink_to(f"..data/{top}")
    container = pod["containers"][0]
    assert container["args"][-1] == "/policies"
    args = [
        str(root / "policies") if a == "/policies" else a.replace("=/config/", f"={root}/config/")
        for a in container["args"]
    ]
    return args, {e["name"]: e for e in container["env"]}


def test_opa_serves_packed_policies_and_uploads_masked_logs(
    tools: Tools, tmp_path: Path, audit_sink: str
) -> None:
    args, env = _lay_out_opa_pod(tools, tmp_path)
    assert {"--authentication=token", "--authorization=basic"} <= set(args)
    assert env["AKSON_OPA_PEP_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "akson-opa-token"
    port = free_port()
    args = [f"--addr=127.0.0.1:{port}" if a.startswith("--addr=") else a for a in args]
    opa = subprocess.Popen(
        [str(tools.opa), *args],
        env={
            "AUDIT_URL": audit_sink,
            "AUDIT_UPLOAD_TOKEN": UPLOAD_TOKEN,
            "AKSON_OPA_PEP_TOKEN": PEP_TOKEN,
        },
    )
    try:
        deadline = time.monotonic() + 20
        while not http_ok(f"http://127.0.0.1:{port}/health"):
            assert opa.poll() is None and time.monotonic() < deadline, "OPA did not start"
            time.sleep(0.1)
        query = {
            "input": {
                "subject": {"id": "12345678901", "kind": "citizen"},
                "action": "read",
                "resource": {"type": "DocumentReference", "patient": "12345678901", "content": "x"},
            }
        }
        url = f"http://127.0.0.1:{port}/v1/data/akson/authz/decision"
        anonymous = urllib.request.Request(url, data=json.dumps(query).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anonymous, timeout=5)
        assert refused.value.code == 401
        writing = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/data/akson", data=b"{}", method="PUT",
            headers={"Authorization": f"Bearer {PEP_TOKEN}"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(writing, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(
            url, data=json.dumps(query).encode(), headers={"Authorization": f"Bearer {PEP_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            decision = json.load(response)
        assert decision["result"]["allow"] is True
        while not AuditSink.uploads:
            assert time.monotonic() < deadline, "no decision log reached audit"
            time.sleep(0.2)
    finally:
        opa.terminate()
        opa.wait(timeout=10)
    path, authorization, events = AuditSink.uploads[0]
    assert path == "/opa/decision-logs"
    assert authorization == f"Bearer {UPLOAD_TOKEN}"
    (event,) = [e for e in events if e["decision_id"] == decision["decision_id"]]
    assert "content" not in event["input"]["resource"]
    assert "/input/resource/content" in event["erased"]
    assert event["labels"]["app"] == "akson-authz"


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def test_the_decision_log_buffer_fits_in_opas_memory_limit(tools: Tools) -> None:
    """OPA holds the decision-log buffer in memory while audit is away: a buffer near its memory
    limit would have OPA killed for memory, and every buffered entry with it (make chaos: the
    buffer holds ten minutes of decisions). The buffer may take at most half the limit."""
    render = tools.helm_template("--show-only", "templates/opa.yaml", "--show-only",
                                 "templates/deployment.yaml")  # fmt: skip
    assert render.returncode == 0, render.stderr
    manifests = [m for m in yaml.safe_load_all(render.stdout) if m]
    configs = [
        yaml.safe_load(text)
        for m in manifests
        if m["kind"] == "ConfigMap"
        for key, text in m["data"].items()
        if key.endswith((".yaml", ".yml")) and "decision_logs" in text
    ]
    (config,) = configs
    buffer = int(config["decision_logs"]["reporting"]["buffer_size_limit_bytes"])
    (opa,) = [
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "akson-opa"
    ]
    limit = _bytes(
        opa["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    )
    assert buffer >= 200 * 2**20  # ten minutes at 250 decisions/s of ~0.8 KiB
    assert 2 * buffer <= limit, (buffer, limit)
