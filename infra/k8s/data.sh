#!/usr/bin/env bash
# The data services of the single-node cluster, in namespace akson-data (called by platform.sh):
#   redis     Debian's redis-server (image akson-redis, `make images WHAT=data`), password from a
#             generated Secret, the config file from that Secret (no password in any argument)
#   postgres  Debian's PostgreSQL 15 (akson-postgres), data on a hostPath PersistentVolume under
#             $AKSON_K8S_STATE/volumes (survives the pod), SCRAM logins only; an init container
#             runs initdb once and (re)sets the application role akson_app every start
#   ferretdb  FerretDB v1 (akson-ferretdb) on it: MongoDB wire protocol on 27017, each client's
#             credentials passed through to PostgreSQL (PLAIN), none of its own
# Every pod non-root (10001, FerretDB 65532), read-only root filesystem, all capabilities dropped,
# RuntimeDefault seccomp: the namespace enforces Pod Security "restricted". The generated
# passwords go only into Secrets (kept when they exist: rerunning changes nothing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
S="${AKSON_K8S_STATE:-/var/lib/akson-k8s}"
K=${K:?run through platform.sh}
kubectl() { "$K/kubectl" --kubeconfig "$S/admin.conf" "$@"; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
ns=akson-data
IMAGES="${AKSON_IMAGES_DIR:-$HOME/.cache/akson/images}"
ref() { awk -F'\t' -v n="/akson-$1:" 'index($1, n) {print $1}' "$IMAGES/images.tsv"; }
redis_image=$(ref redis); postgres_image=$(ref postgres); ferretdb_image=$(ref ferretdb)
[[ -n $redis_image && -n $postgres_image && -n $ferretdb_image ]] || { log "no data images: make images WHAT=data"; exit 1; }
t0=$SECONDS

kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label --overwrite namespace $ns pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest >/dev/null

secret() { # name key=value... : created once, never overwritten
  local name=$1; shift
  kubectl -n $ns get secret "$name" >/dev/null 2>&1 && return 0
  local args=() kv
  for kv in "$@"; do args+=(--from-literal="$kv"); done
  kubectl -n $ns create secret generic "$name" "${args[@]}" >/dev/null
  log "created Secret $ns/$name"
}
rand() { openssl rand -hex 24; }
redis_password=$(rand)
secret redis "redis.conf=$(printf 'requirepass %s\nbind * -::*\nport 6379\nprotected-mode no\nsave ""\nappendonly no\ndir /data\n' "$redis_password")" \
  "redis-password=$redis_password"
secret postgres "superuser-password=$(rand)" "app-password=$(rand)"

# PostgreSQL's data on the node (no storage provisioner here): a hostPath PV, bound to one claim
vol=$S/volumes/akson-data-postgres
mkdir -p "$vol" && chown 10001:10001 "$vol" && chmod 0700 "$vol"

kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: akson-data-postgres, labels: {app: postgres}}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: akson-local
  claimRef: {namespace: $ns, name: postgres}
  hostPath: {path: $vol, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: postgres, namespace: $ns}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: akson-local
  volumeName: akson-data-postgres
  resources: {requests: {storage: 10Gi}}
YAML

# the security settings of every container here (Pod Security "restricted")
sc='{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}'
psc='{runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: {type: RuntimeDefault}}'

kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, namespace: $ns, labels: {app: redis}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext: $psc
      containers:
      - name: redis
        image: $redis_image
        imagePullPolicy: Never
        args: [/etc/redis/redis.conf]
        ports: [{name: redis, containerPort: 6379}]
        securityContext: $sc
        readinessProbe: {tcpSocket: {port: 6379}, periodSeconds: 5}
        resources: {requests: {cpu: 20m, memory: 64Mi}, limits: {memory: 1Gi}}
        volumeMounts:
        - {name: config, mountPath: /etc/redis, readOnly: true}
        - {name: data, mountPath: /data}
      volumes:
      - {name: config, secret: {secretName: redis, items: [{key: redis.conf, path: redis.conf}], defaultMode: 0440}}
      - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: $ns}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379, targetPort: 6379}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres, namespace: $ns, labels: {app: postgres}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext: $psc
      initContainers:
      # initdb once (SCRAM only, no trust), then the application role (password from the Secret,
      # on stdin) through the unix socket of a server listening on no TCP port
      - name: init
        image: $postgres_image
        imagePullPolicy: Never
        command: [sh, -ec]
        args:
        - |
          if [ ! -s "\$PGDATA/PG_VERSION" ]; then
            initdb -U akson --auth=scram-sha-256 --pwfile=/secrets/superuser-password -E UTF8 --locale=C.UTF-8 >/dev/null
            echo "host all all all scram-sha-256" >> "\$PGDATA/pg_hba.conf"
            echo initialised
          fi
          pg_ctl -w -o "-c listen_addresses= -c unix_socket_directories=/tmp -c log_min_error_statement=panic -c log_statement=none" -l /tmp/init.log start >/dev/null
          { printf "DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'akson_app') THEN CREATE ROLE akson_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; END IF; END \\\$\\\$;\n"
            printf "ALTER ROLE akson_app PASSWORD '%s';\nGRANT CREATE ON DATABASE postgres TO akson_app;\n" "\$(cat /secrets/app-password)"
          } | PGPASSWORD="\$(cat /secrets/superuser-password)" psql -h /tmp -U akson -d postgres -v ON_ERROR_STOP=1 -q
          pg_ctl -w stop >/dev/null
          echo "role akson_app ready"
        env: [{name: PGDATA, value: /var/lib/postgresql/data/pgdata}]
        securityContext: $sc
        resources: {requests: {cpu: 20m, memory: 64Mi}, limits: {memory: 1Gi}}
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
        - {name: tmp, mountPath: /tmp}
        - {name: secrets, mountPath: /secrets, readOnly: true}
      containers:
      - name: postgres
        image: $postgres_image
        imagePullPolicy: Never
        args: [postgres, -c, listen_addresses=*, -c, unix_socket_directories=/tmp, -c, max_connections=300,
               -c, plan_cache_mode=force_custom_plan, -c, log_min_error_statement=panic,
               -c, log_parameter_max_length=0, -c, log_parameter_max_length_on_error=0]
        env: [{name: PGDATA, value: /var/lib/postgresql/data/pgdata}]
        ports: [{name: postgres, containerPort: 5432}]
        securityContext: $sc
        readinessProbe: {exec: {command: [pg_isready, -h, /tmp, -U, akson]}, periodSeconds: 5}
        resources: {requests: {cpu: 50m, memory: 128Mi}, limits: {memory: 2Gi}}
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
        - {name: tmp, mountPath: /tmp}
        - {name: run, mountPath: /var/run/postgresql}
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: postgres}}
      - {name: tmp, emptyDir: {}}
      - {name: run, emptyDir: {}}
      - {name: secrets, secret: {secretName: postgres, defaultMode: 0440}}
---
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: $ns}
spec:
  selector: {app: postgres}
  ports: [{name: postgres, port: 5432, targetPort: 5432}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ferretdb, namespace: $ns, labels: {app: ferretdb}}
spec:
  replicas: 1
  selector: {matchLabels: {app: ferretdb}}
  template:
    metadata: {labels: {app: ferretdb}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: ferretdb
        image: $ferretdb_image
        imagePullPolicy: Never
        args: [--handler=postgresql, "--postgresql-url=postgres://postgres.$ns.svc.cluster.local:5432/postgres?pool_max_conns=240",
               --listen-addr=:27017, --debug-addr=127.0.0.1:8088, --state-dir=/tmp/state, --telemetry=disable, --log-level=error+1]
        # a client without credentials stays without
        env: [{name: PGUSER, value: no-credentials}, {name: PGPASSWORD, value: ""}, {name: PGPASSFILE, value: /dev/null}]
        ports: [{name: mongodb, containerPort: 27017}]
        securityContext: $sc
        readinessProbe: {tcpSocket: {port: 27017}, periodSeconds: 5}
        resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 1Gi}}
        volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: ferretdb, namespace: $ns}
spec:
  selector: {app: ferretdb}
  ports: [{name: mongodb, port: 27017, targetPort: 27017}]
YAML
for d in redis postgres ferretdb; do
  kubectl -n $ns rollout status deployment/$d --timeout=300s >/dev/null || {
    kubectl -n $ns get pods >&2; kubectl -n $ns logs deploy/$d --all-containers --tail=30 >&2 || true; exit 1; }
done
kubectl -n $ns get pods -o wide >&2
log "data: redis, postgres, ferretdb ready in $((SECONDS - t0)) s"
