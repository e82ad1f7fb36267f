#!/usr/bin/env bash
# The local demo cluster: one MinIO process per storage endpoint of
# deploy/local/regions.yaml (3 regions, eastus with 2 endpoints) and vmappd,
# all on loopback; then a sample application published through the CLI.
#
# State, data and logs live in $VMAPP_DEMO_DIR (default .demo in the clone);
# `make down` (deploy/local/down.sh) stops everything and removes it.
# Running it again first stops the previous demo cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/deploy/local
STATE=${VMAPP_DEMO_DIR:-$ROOT/.demo}
BIN=$ROOT/bin
MINIO=${MINIO:-$(cd "$ROOT" && go run ./internal/miniotest/cmd/install-minio)}

VMAPPD_ADDR=127.0.0.1:7443
METRICS_ADDR=127.0.0.1:7444
# endpoint port -> console port; the same ports as regions.yaml.
MINIO_PORTS=(9101 9102 9103 9104)
CONSOLE_OFFSET=100

export VMAPP_S3_ACCESS_KEY=vmapp-demo
export VMAPP_S3_SECRET_KEY=vmapp-demo-secret
export VMAPP_SERVER=$VMAPPD_ADDR

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
die() { echo "demo: $*" >&2; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for WHAT LOGFILE CMD...
  local what=$1 log=$2; shift 2
  for _ in $(seq 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "demo: $what did not come up; the end of $log:" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
}

# A previous demo cluster is stopped first, so `make demo` can run twice.
"$HERE/down.sh" --quiet

for p in "${MINIO_PORTS[@]}" $((9101 + CONSOLE_OFFSET)) $((9102 + CONSOLE_OFFSET)) $((9103 + CONSOLE_OFFSET)) $((9104 + CONSOLE_OFFSET)) 7443 7444; do
  port_free "$p" || die "port $p on 127.0.0.1 is already taken by another process (see: ss -ltnp 'sport = :$p'); stop it and run make demo again"
done

mkdir -p "$STATE/logs"
bold "starting 4 MinIO storage endpoints (3 regions) with $MINIO"
i=0
for port in "${MINIO_PORTS[@]}"; do
  i=$((i + 1))
  mkdir -p "$STATE/minio-$port"
  MINIO_ROOT_USER=$VMAPP_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$VMAPP_S3_SECRET_KEY MINIO_BROWSER=off \
    "$MINIO" server "$STATE/minio-$port" --quiet --address "127.0.0.1:$port" \
    --console-address "127.0.0.1:$((port + CONSOLE_OFFSET))" >"$STATE/logs/minio-$port.log" 2>&1 &
  echo $! >"$STATE/minio-$port.pid"
done
for port in "${MINIO_PORTS[@]}"; do
  wait_for "MinIO on port $port" "$STATE/logs/minio-$port.log" curl -fsS "http://127.0.0.1:$port/minio/health/live"
  echo "  MinIO http://127.0.0.1:$port ready"
done

bold "starting vmappd on $VMAPPD_ADDR (metrics on http://$METRICS_ADDR/metrics)"
"$BIN/vmappd" --data "$STATE/vmappd" --listen "$VMAPPD_ADDR" --metrics "$METRICS_ADDR" \
  --regions "$HERE/regions.yaml" >"$STATE/logs/vmappd.log" 2>&1 &
echo $! >"$STATE/vmappd.pid"
wait_for vmappd "$STATE/logs/vmappd.log" "$BIN/vmapp" region list
run "$BIN/vmapp" region list

bold "building the sample application (deploy/local/sample/hello)"
tar -C "$HERE/sample/hello" -czf "$STATE/hello.tar.gz" .
ls -l "$STATE/hello.tar.gz"

bold "publishing it: gallery, application, version with its package"
run "$BIN/vmapp" gallery create demo --location eastus --description "vmapp demo gallery"
run "$BIN/vmapp" app create --gallery demo hello --os linux --description "prints hello"
run "$BIN/vmapp" version create --gallery demo --app hello 1.0.0 --location eastus \
  --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
  --update "tar -xzf hello && ./update.sh" \
  --target-region eastus=2 --target-region westus --target-region northeurope \
  --package "$STATE/hello.tar.gz"

bold "the published version"
run "$BIN/vmapp" version show --gallery demo --app hello 1.0.0

bold "a version whose package vmappd imports from a URL (here a presigned MinIO URL)"
url=$(cd "$ROOT" && go run ./deploy/local/presign "http://127.0.0.1:9103" "$STATE/hello.tar.gz")
printf '\033[2m$ %s\033[0m\n' "vmapp version create --gallery demo --app hello 1.1.0 ... --package-url '${url%%\?*}?(signature)'"
"$BIN/vmapp" version create --gallery demo --app hello 1.1.0 --location eastus \
  --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
  --target-region eastus --package-url "$url" >/dev/null
run "$BIN/vmapp" version list --gallery demo --app hello

cat <<EOF

$(printf '\033[1m')The demo cluster is running.$(printf '\033[0m')
  What it shows today: the catalog (galleries, applications, versions with
  every seed rule), packages uploaded in resumable, verified chunks and
  imported from URLs into the source region's MinIO.
  Not yet built: replication to target regions (issue 4), downloads
  (issue 5) and the agent that installs (issue 6) — the demo stops at a
  stored, verified package.

  Logs:      $STATE/logs/ (vmappd.log, minio-<port>.log)
  CLI:       export VMAPP_SERVER=$VMAPPD_ADDR; $BIN/vmapp version show --gallery demo --app hello 1.0.0
  Metrics:   curl -s http://$METRICS_ADDR/metrics | grep grpc_server_handled_total
  Stop:      make down   (stops every process and removes $STATE)
EOF
