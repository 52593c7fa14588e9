"""The images `make images` built (infra/images/build.sh), opened with crane and one run.

Not part of `make test` (it needs the images, root and a few minutes): `make images-test`.
Every image listed in images.tsv is pushed to a registry of the test's own on 127.0.0.1
(`crane registry serve`), then read back with `crane config` and `crane export`, and checked:
a numeric non-root user, an entrypoint that is an executable file in the image, no file under
/root, nothing that looks like a secret; the service images have CPython 3.11 and their own
package. Finally one service's filesystem is run, read-only and as its image's user, in a
chroot: `python -c "import journal.main"`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(os.environ.get("AKSON_IMAGES_DIR", Path.home() / ".cache" / "akson" / "images"))
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/*/main.py"))
RUN_SERVICE = "journal"

# file names that hold credentials, and content that is a private key
SECRET_NAMES = re.compile(
    r"(^|/)(id_rsa|id_ed25519|id_ecdsa|\.netrc|\.pypirc|\.git-credentials|\.env|"
    r"credentials|\.dockercfg|config\.json|.*\.(pem|key|p12|pfx|jks))$"
)
# where a certificate bundle or a package's own files are expected to match SECRET_NAMES
SECRET_NAME_ALLOWED = re.compile(r"^(etc/ssl/|usr/share/ca-certificates/|app/\.venv/lib/)")
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40}")


@dataclass(frozen=True)
class Built:
    ref: str
    digest: str
    size: int
    file: Path
    image_id: str

    @property
    def service(self) -> str | None:
        match = re.fullmatch(r".*/akson-([a-z-]+):[^:/]+", self.ref)
        return match.group(1) if match and match.group(1) in SERVICES else None


def built_images() -> list[Built]:
    listing = IMAGES / "images.tsv"
    if not listing.exists():
        return []
    rows = [line.split("\t") for line in listing.read_text().splitlines() if line.strip()]
    return [Built(r[0], r[1], int(r[2]), Path(r[3]), r[4]) for r in rows]


BUILT = built_images()


@dataclass
class Opened:
    config: dict[str, Any]
    config_digest: str
    members: dict[str, tarfile.TarInfo]
    small_files: dict[str, bytes]

    def resolve(self, path: str, depth: int = 0) -> tarfile.TarInfo | None:
        """The member at an absolute path, following symbolic links (also in directories)."""
        assert depth < 40, f"symlink loop at {path}"
        parts = [p for p in path.split("/") if p and p != "."]
        done: list[str] = []
        for i, part in enumerate(parts):
            if part == "..":
                if done:
                    done.pop()
                continue
            done.append(part)
            member = self.members.get("/".join(done))
            if member is None:
                return None
            if member.issym():
                target = member.linkname
                base = "" if target.startswith("/") else "/".join(done[:-1])
                rest = "/".join(parts[i + 1 :])
                return self.resolve(f"/{base}/{target}/{rest}".rstrip("/"), depth + 1)
        return self.members.get("/".join(done))


@pytest.fixture(scope="session")
def crane() -> Path:
    out = subprocess.run(
        [str(ROOT / "infra/tools/build.sh"), "crane"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.split()[1])


def chart_env(service: str) -> list[str]:
    """The environment the chart's Deployment gives the service, each Secret a random value."""
    helm = subprocess.run(
        [str(ROOT / "infra/tools/build.sh"), "helm"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    rendered = subprocess.run(
        [helm, "template", "akson", str(ROOT / "charts/akson")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deployment = next(
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == f"akson-{service}"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = []
    for item in container["env"]:
        if "value" in item:
            value = item["value"]
        elif item["name"].endswith("_MONGO_URL"):
            value = "mongodb://akson:" + secrets.token_hex(8) + "@127.0.0.1:1/?replicaSet=rs0"
        else:
            value = secrets.token_urlsafe(24)
        env.append(f"{item['name']}={value}")
    return env


@pytest.fixture(scope="session")
def registry(crane: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(crane), "registry", "serve", "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "crane registry serve did not listen"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def pushed_ref(registry: str, built: Built) -> str:
    return f"{registry}/{built.ref.split('/', 1)[1]}"


@pytest.fixture(scope="session")
def opened(crane: Path, registry: str) -> Iterator[dict[str, Opened]]:
    cache: dict[str, Opened] = {}

    def open_image(built: Built) -> Opened:
        if built.ref not in cache:
            ref = pushed_ref(registry, built)
            subprocess.run(
                [str(crane), "push", str(built.file), ref], capture_output=True, check=True
            )
            raw = subprocess.run(
                [str(crane), "config", ref], capture_output=True, check=True
            ).stdout
            config = json.loads(raw)
            export = subprocess.Popen([str(crane), "export", ref, "-"], stdout=subprocess.PIPE)
            assert export.stdout is not None
            members: dict[str, tarfile.TarInfo] = {}
            small: dict[str, bytes] = {}
            with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
                for member in tar:
                    name = member.name.removeprefix("./").rstrip("/")
                    members[name] = member
                    if member.isfile() and member.size < 1 << 20:
                        handle = tar.extractfile(member)
                        if handle is not None:
                            small[name] = handle.read()
            assert export.wait() == 0, f"crane export {ref} failed"
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            cache[built.ref] = Opened(config, digest, members, small)
        return cache[built.ref]

    yield {b.ref: open_image(b) for b in BUILT}


def test_images_were_built() -> None:
    assert BUILT, f"no {IMAGES}/images.tsv: run `make images` first"
    refs = {b.ref for b in BUILT}
    for service in SERVICES:
        assert any(b.service == service for b in BUILT), f"no image of service {service}: {refs}"
    for built in BUILT:
        assert built.file.exists(), built.file
        assert built.file.stat().st_size == built.size, f"{built.file} changed since the build"


@pytest.mark.parametrize("built", BUILT, ids=[b.ref for b in BUILT])
def test_image(built: Built, opened: dict[str, Opened], crane: Path, registry: str) -> None:
    image = opened[built.ref]
    config = image.config["config"]
    assert image.config["os"] == "linux" and image.config["architecture"] == "amd64"

    # the digest images.tsv printed is the one of what was pushed
    digest = subprocess.run(
        [str(crane), "digest", pushed_ref(registry, built)], capture_output=True, text=True
    ).stdout.strip()
    assert digest == built.digest
    assert image.config_digest == built.image_id, "images.tsv has another image id"

    user = config.get("User", "")
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", user), f"user {user!r} is not numeric uid[:gid]"
    assert int(user.split(":")[0]) != 0, "runs as root"
    if ":" in user:
        assert int(user.split(":")[1]) != 0, "runs with group root"

    command = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    assert command, "no entrypoint and no cmd"
    program = command[0]
    if "/" in program:
        candidates = [program]
    else:
        path = next(e for e in config.get("Env", []) if e.startswith("PATH=")).split("=", 1)[1]
        candidates = [f"{d}/{program}" for d in path.split(":")]
    found = [m for m in (image.resolve(c) for c in candidates) if m is not None]
    assert found, f"entrypoint {program} is not in the image (looked at {candidates})"
    assert found[0].isfile() and found[0].mode & 0o111, f"{program} is not an executable file"

    under_root = [n for n in image.members if n.startswith("root/")]
    assert not under_root, f"files under /root: {under_root[:10]}"
    named = [
        n
        for n, m in image.members.items()
        if m.isfile() and SECRET_NAMES.search(n) and not SECRET_NAME_ALLOWED.match(n)
    ]
    assert not named, f"files named like secrets: {named}"
    keys = [n for n, data in image.small_files.items() if PRIVATE_KEY.search(data)]
    assert not keys, f"private keys in the image: {keys}"
    # nothing of the build is left: its inputs, uv's cache
    assert not [n for n in image.members if n.startswith("tmp/") and n != "tmp"]
    # root owns everything: the user cannot change its own program
    owned = [n for n, m in image.members.items() if m.uid != 0 and not m.issym()]
    assert not owned, f"files not owned by root: {owned[:10]}"

    if built.service is not None:
        service = built.service
        assert f"AKSON_SERVICE={service}" in config["Env"]
        python = image.resolve("/app/.venv/bin/python")
        assert python is not None and image.resolve("/usr/bin/python3.11") is not None
        assert image.members["app/.venv/pyvenv.cfg"] is not None
        cfg = image.small_files["app/.venv/pyvenv.cfg"].decode()
        assert re.search(r"^version_info = 3\.11\.", cfg, re.M), cfg
        site = "app/.venv/lib/python3.11/site-packages"
        for package in (service, "akson_common", "uvicorn", "fastapi"):
            assert f"{site}/{package}/__init__.py" in image.members, f"{package} is missing"
        assert f"{site}/{service}/main.py" in image.members


def run_in_image(
    built: Built,
    opened: dict[str, Opened],
    crane: Path,
    registry: str,
    rootfs: Path,
    argv: list[str],
    extra_env: tuple[str, ...] = (),
    network: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`argv` in the image's filesystem (crane export), as the image's user and in its working
    directory, with its environment: in a mount and PID namespace of its own, the filesystem
    read-only, /tmp an empty tmpfs, as the chart runs it; `network`: in a network namespace of
    its own too, with only a loopback (nothing it listens on is seen by the machine)."""
    assert os.geteuid() == 0, "needs root (unshare, mounts): run as root"
    config = opened[built.ref].config["config"]
    rootfs.mkdir()
    export = subprocess.Popen(
        [str(crane), "export", pushed_ref(registry, built), "-"], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(rootfs)], stdin=export.stdout, check=True)
    assert export.wait() == 0
    for directory in ("tmp", "proc", "dev"):
        (rootfs / directory).mkdir(exist_ok=True)
    (rootfs / "dev" / "null").touch()
    uid, _, gid = config["User"].partition(":")
    mounts = (
        'set -e; r="$1"; shift; '
        'mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"; '
        'mount -t tmpfs tmpfs "$r/tmp"; mount -t proc proc "$r/proc"; '
        'mount --bind /dev/null "$r/dev/null"; '
        + ("ip link set lo up; " if network else "")
        + 'exec "$@"'
    )
    return subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--propagation", "private"]
        + (["--net"] if network else [])
        + ["sh", "-c", mounts, "sh", str(rootfs)]
        + ["env", "-i", *config.get("Env", []), *extra_env]
        + ["unshare", f"--root={rootfs}", f"--wd={config.get('WorkingDir') or '/'}"]
        + [f"--setuid={uid}", f"--setgid={gid or uid}", "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_service_runs_in_a_chroot(
    opened: dict[str, Opened], crane: Path, registry: str, tmp_path: Path
) -> None:
    """`python -c "import journal.main"` in the image, with the environment the chart gives
    the service (its Secrets random)."""
    built = next(b for b in BUILT if b.service == RUN_SERVICE)
    code = (
        f"import os, sys, {RUN_SERVICE}.main as m; "
        "assert sys.version_info[:2] == (3, 11), sys.version; "
        "print(sys.executable, sys.version.split()[0], type(m.app).__name__, os.getcwd(), "
        "os.getuid(), os.getgid())"
    )
    env = ("HOME=/nonexistent", *chart_env(RUN_SERVICE))
    result = run_in_image(
        built, opened, crane, registry, tmp_path / "rootfs", ["python", "-c", code], env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("/app/.venv/bin/python 3.11."), result.stdout
    assert result.stdout.split()[2:] == ["FastAPI", "/app", "10001", "10001"], result.stdout


# the service that starts without a database or a sidecar (the chart gives it neither)
SERVE_SERVICE = "console"
PROBE = """
import sys, time, urllib.request
for _ in range(120):
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=1) as answer:
            print(answer.status, answer.read().decode())
            sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("no answer on /healthz in 60 s")
"""


def test_a_service_image_serves_with_its_command(
    opened: dict[str, Opened], crane: Path, registry: str, tmp_path: Path
) -> None:
    """The image's own CMD (sh -c "exec uvicorn ...") starts console, which answers /healthz;
    in a network namespace of its own, so it listens on no port of the machine."""
    built = next(b for b in BUILT if b.service == SERVE_SERVICE)
    command = opened[built.ref].config["config"]["Cmd"]
    script = (
        '"$@" & server=$!; python -c "$PROBE"; status=$?; '
        'kill -TERM "$server"; wait "$server"; echo "server exited $?" >&2; exit "$status"'
    )
    env = ("HOME=/nonexistent", f"PROBE={PROBE}", *chart_env(SERVE_SERVICE))
    argv = ["/bin/sh", "-c", script, "sh", *command]
    result = run_in_image(built, opened, crane, registry, tmp_path / "rootfs", argv, env, True)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.startswith("200 "), result.stdout
    assert "Application startup complete" in result.stderr, result.stderr[-3000:]
    # SIGTERM (a rolling update) stops it cleanly; uvicorn re-raises the signal: 128 + 15
    assert "Application shutdown complete" in result.stderr, result.stderr[-3000:]
    assert re.search(r"^server exited (0|143)$", result.stderr, re.M), result.stderr[-3000:]


# what each static binary says when it runs: it is static (the image has no libc) and whole
STATIC_RUNS = {
    "opa": (["/opa", "version"], r"Version: \d"),
    "daprd": (["/daprd", "--version"], r"^\d+\.\d+\.\d+$"),
    **{
        name: ([f"/{name}", "--help"], f"Usage of /?{name}")
        for name in ("operator", "injector", "sentry", "placement", "scheduler")
    },
}
STATIC = [b for b in BUILT if b.ref.rsplit("/", 1)[1].split(":")[0] in STATIC_RUNS]


@pytest.mark.parametrize("built", STATIC, ids=[b.ref for b in STATIC])
def test_a_static_binary_runs_in_its_image(
    built: Built, opened: dict[str, Opened], crane: Path, registry: str, tmp_path: Path
) -> None:
    argv, expected = STATIC_RUNS[built.ref.rsplit("/", 1)[1].split(":")[0]]
    entrypoint = opened[built.ref].config["config"].get("Entrypoint") or []
    assert entrypoint == argv[:1], f"entrypoint {entrypoint}"
    result = run_in_image(built, opened, crane, registry, tmp_path / "rootfs", argv)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode in (0, 2), output[-2000:]  # flag's --help exits 2
    assert re.search(expected, output, re.M), output[-2000:]


def test_the_helm_test_image_has_curl(
    opened: dict[str, Opened], crane: Path, registry: str, tmp_path: Path
) -> None:
    """The image for the chart's `helm test` pod (tests.image): `sh -c "curl ..."` as 10001."""
    built = [b for b in BUILT if re.fullmatch(r".*/akson-curl:[^:/]+", b.ref)]
    assert built, "no curl image: `make images WHAT=tests`"
    argv = ["sh", "-c", "id -u; curl --version"]
    result = run_in_image(built[0], opened, crane, registry, tmp_path / "rootfs", argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.match(r"10001\ncurl \d+\.\d+", result.stdout), result.stdout
    assert "https" in result.stdout.split("Protocols:")[1].split()
