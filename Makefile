# Akson: `make up` runs the platform locally, `make test` proves it. Both install what they need.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
export PATH := $(PATH):/usr/local/go/bin

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen --all-packages
VENV_STAMP := .venv/.synced
TOOLS := infra/tools/build.sh
# every service is a folder services/<name>/<name>/ with a main.py; nothing else lists them
SERVICE_PACKAGES := $(patsubst %/main.py,%,$(wildcard services/*/*/main.py))
# the runtime policies OPA serves in the chart: no tests, no manifest checks (one source: policies/)
CHART_POLICIES ?= charts/akson/files/policies

.PHONY: help up down status demo token soak upstream-token test lint unit policy-test integration chart-test chart-policies images images-test tools venv bench bench-foundation bench-access bench-audit bench-events load profile chaos seed clean

help: ## this list, by group
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-z0-9-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV_STAMP): uv.lock pyproject.toml $(wildcard services/*/pyproject.toml)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --all-packages
	@touch $@

# Every target that reads a run folder honours AKSON_RUN_DIR (default .run): e.g. a test stack's.

##@ Run the platform locally
up: venv tools ## start everything (supervised, detached), load the demo data (AKSON_DEMO=0: none), print what to try
	$(RUN) python infra/local/stack.py up

down: ## stop everything `make up` started (asks its supervisor, then cleans up from the pids)
	@$(RUN) python infra/local/stack.py down

status: ## every process of the running platform (pid, uptime, restarts) and where it listens
	@$(RUN) python infra/local/stack.py status

demo: ## load the demo data into the running platform (idempotent: again changes nothing) and time it
	@$(RUN) python infra/local/demo.py load

token: ## a ready bearer token: AS=gp|nurse|nursing|stranger|blocked|citizen|auditor|lab|admin [AUD=<service>, default gateway]
	@$(RUN) python infra/local/demo.py token $(AS) $(if $(AUD),--audience $(AUD))

upstream-token: ## a development upstream token: WHO=personnel|citizen ID=<HPR number|national id> [UNIT=<org number>]
	@$(RUN) python infra/local/stack.py mint $(WHO) $(ID) $(if $(UNIT),--unit $(UNIT))

venv: $(VENV_STAMP) ## install the Python workspace (uv, one lockfile)

tools: ## build the pinned Go tools once (cached outside the clone), install redis-server, curl and jq if missing
	@$(TOOLS) opa ferretdb daprd regal helm kubeconform >/dev/null
	@infra/tools/ensure-packages.sh redis-server=redis-server curl=curl jq=jq

clean: down ## remove run folders (the tool cache stays)
	rm -rf .run

##@ Test
test: lint unit policy-test chart-test integration e2e ## everything CI runs

lint: venv tools ## ruff, mypy --strict, opa fmt/check, regal
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy services/common/akson_common $(wildcard infra/local/*.py) $(wildcard infra/k8s/*.py)
	$(RUN) mypy $(SERVICE_PACKAGES) $(wildcard services/*/tests) tests loadtests examples
	@opa=$$($(TOOLS) opa | cut -d' ' -f2); \
	  test -z "$$($$opa fmt --list policies)" || { echo "opa fmt: run 'opa fmt -w policies'"; exit 1; }; \
	  $$opa check --strict policies
	@regal=$$($(TOOLS) regal | cut -d' ' -f2); $$regal lint policies

unit: venv ## unit tests (no servers)
	$(RUN) pytest services -q

policy-test: tools ## opa test with coverage
	@opa=$$($(TOOLS) opa | cut -d' ' -f2); $$opa test policies -v | tail -n 3; \
	  $$opa test policies --coverage --threshold 95 >/dev/null && echo "policy coverage >= 95 %"

integration: venv tools ## integration tests against the real stack (started and stopped by the tests)
	$(RUN) pytest tests/integration -q

.PHONY: e2e browser
e2e: venv tools browser ## the console in a real browser: playwright-core + Debian's chromium + axe-core (screenshots: test-artifacts/e2e/)
	cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error
	$(RUN) pytest tests/e2e -q

browser: ## Debian's chromium for the browser tests, installed when missing (never a downloaded browser)
	@infra/tools/ensure-packages.sh chromium=chromium

##@ Load and benchmarks (each on a stack of its own, except seed)
seed: venv ## generate the large synthetic population (.run/seed/*.ndjson) and load it into `make up`'s stack
	$(RUN) python loadtests/seed_load.py

bench: bench-foundation bench-access bench-audit bench-events ## every benchmark below

bench-foundation: venv tools ## FerretDB, OPA decisions, a policy-checked journal read, identity
	$(RUN) python loadtests/bench_foundation.py

bench-access: venv tools ## decisions and authorised journal reads on seeded data (ARGS="--persons N")
	$(RUN) python loadtests/bench_access.py $(ARGS)

bench-audit: venv tools ## the auditor's query by patient over a large decision log (ARGS="--decisions N")
	$(RUN) python loadtests/bench_audit.py $(ARGS)

bench-events: venv tools ## the event pipeline: a master-data import to every consumer's projection (ARGS="--persons N", default 100000)
	$(RUN) python loadtests/bench_events.py $(ARGS)

load: venv tools ## locust: read, create, search, summary, token exchange, floors, event drain (ARGS="--seconds 15 --import 2000")
	$(RUN) python loadtests/load.py $(ARGS)

profile: venv tools ## the authorised read profiled: py-spy, pg_stat_statements, OPA and FerretDB metrics (ARGS="--seconds 30")
	$(RUN) python loadtests/load.py --profile $(ARGS)

soak: venv tools ## light steady traffic for SOAK_MINUTES (75), probes end to end (ARGS="--minutes 3")
	$(RUN) python loadtests/soak.py $(ARGS)

##@ Chaos
chaos: venv tools ## the fault suite: kill -9, stop, restart every part under load, count; writes loadtests/CHAOS.md (ARGS="--only opa,redis --scale 0.1")
	$(RUN) python loadtests/chaos.py $(ARGS)

##@ Cluster (the Helm chart; standing it up: infra/k8s/README.md)
chart-test: venv tools ## helm lint/template, kubeconform (Kubernetes + Dapr CRD schemas), manifest policies, hadolint
	$(RUN) pytest tests/charts -q

images: ## OCI images without a container engine (mmdebstrap, uv, crane) into ~/.cache/akson/images (WHAT="services static dapr tests data")
	@infra/tools/ensure-packages.sh mmdebstrap=mmdebstrap
	infra/images/build.sh $(WHAT)

images-test: ## check the built images (crane config/export) and run one service's filesystem in a chroot
	$(RUN) pytest tests/images -q

# Dapr and Akson on the single-node cluster (issue 21, stages 3-4; infra/k8s/README.md "Stage 3–4")
.PHONY: k8s-platform k8s-akson k8s-test
k8s-platform: venv ## images into the node, Dapr's control plane, Redis + FerretDB/PostgreSQL (akson-data), the Secrets and who identity trusts (make images WHAT=data first)
	AKSON_PYTHON="$(RUN) python" infra/k8s/platform.sh $(WHAT)

k8s-akson: ## helm upgrade --install akson charts/akson -n akson (infra/k8s/cluster-values.yaml) --wait, then helm test
	infra/k8s/akson.sh

k8s-test: venv ## through the cluster: a user's token -> write -> read -> audit, database, NetworkPolicy, Pod Security, rolling upgrade under load, pods killed (figures)
	AKSON_PYTHON="$(RUN) python" infra/k8s/k8s-test.sh

chart-policies: ## copy the runtime policies into the chart (the chart tests fail when the copy is stale)
	rm -rf $(CHART_POLICIES)
	cd policies && find . -type f \( -name '*.rego' -o -name '*.json' \) ! -name '*_test.rego' \
	  ! -path './manifests/*' -exec install -D -m 0644 {} '$(abspath $(CHART_POLICIES))/{}' \;

# A single-node Kubernetes on this machine (issue 21, stage 2; infra/k8s/README.md "Stage 2")
.PHONY: k8s-up k8s-down k8s-status k8s-smoke k8s-binaries
k8s-binaries: ## build the cluster's binaries from their pinned Go modules (cached; long the first time)
	infra/tools/build-cluster.sh

k8s-up: ## start the single-node cluster (root; state in /var/lib/akson-k8s), wait for node Ready
	infra/k8s/cluster.sh up

k8s-down: ## stop every cluster process; remove pods, mounts, netns, links, nft/iptables rules
	infra/k8s/cluster.sh down

k8s-status: ## the cluster's processes, node, pods and listening addresses
	infra/k8s/cluster.sh status

k8s-smoke: ## node Ready, non-root pod, Service by DNS, NetworkPolicy deny, privileged pod refused (times)
	infra/k8s/smoke.sh
