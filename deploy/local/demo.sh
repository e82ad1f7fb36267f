#!/usr/bin/env bash
# The local demo cluster: one MinIO process per storage endpoint of
# deploy/local/regions.yaml (3 regions, eastus with 2 endpoints) and vmappd,
# all on loopback; then a sample application published through the CLI.
# vmappd serves mutual TLS with development certificates (`vmappd certs`):
# the CLI uses the client certificate "operator", each agent its own.
#
# State, data and logs live in $VMAPP_DEMO_DIR (default .demo in the clone);
# `make down` (deploy/local/down.sh) stops everything and removes it.
# Running it again first stops the previous demo cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/deploy/local
STATE=${VMAPP_DEMO_DIR:-$ROOT/.demo}
BIN=$ROOT/bin
MINIO=${MINIO:-$(cd "$ROOT" && go run ./internal/testkit/miniotest/cmd/install-minio)}

# CLUSTER=3 runs vmappd as a three-node cluster (7443, 7445, 7447; raft on
# 7543, 7545, 7547; metrics on 7444, 7446, 7448; the REST API on 8443,
# 8445, 8447) and ends with a failover.
CLUSTER=${CLUSTER:-1}
case "$CLUSTER" in 1 | 3) ;; *) echo "demo: CLUSTER=$CLUSTER: want 1 or 3" >&2; exit 2 ;; esac
NODES=()
for i in $(seq "$CLUSTER"); do NODES+=("127.0.0.1:$((7441 + 2 * i))"); done
VMAPPD_ADDR=$(IFS=,; echo "${NODES[*]}")
METRICS_ADDR=127.0.0.1:7444
REST_ADDR=127.0.0.1:8443
CONSOLE_URL=https://127.0.0.1:8443/ui/
# endpoint port -> console port; the same ports as regions.yaml.
MINIO_PORTS=(9101 9102 9103 9104)
CONSOLE_OFFSET=100

export VMAPP_S3_ACCESS_KEY=vmapp-demo
export VMAPP_S3_SECRET_KEY=vmapp-demo-secret
export VMAPP_SERVER=$VMAPPD_ADDR
CERTS=$STATE/certs
AGENTS=(vm1 vm2 web-0 web-1)
# vm3's agent verifies signatures (the signed gallery step).
SIGNED_VM=vm3
# The CLI trusts the demo CA and presents the operator's certificate.
export VMAPP_CA=$CERTS/ca.pem VMAPP_CERT=$CERTS/operator.pem VMAPP_KEY=$CERTS/operator-key.pem

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# quote prints its arguments as a shell reads them back, so that the
# commands shown can be pasted (with the CLI's variables exported).
quote() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${out[*]}"
}
run() { printf '\033[2m$ %s\033[0m\n' "$(quote "$@")"; "$@"; }
die() { echo "demo: $*" >&2; exit 1; }

for tool in curl tar; do
  command -v "$tool" >/dev/null || die "$tool is missing: the demo needs it (Debian, Ubuntu: sudo apt-get install $tool)"
done

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
[ ! -d "$STATE" ] || echo "demo: stopping the previous demo cluster and deleting its state in $STATE (as make down does)"
"$HERE/down.sh" --quiet

for p in "${MINIO_PORTS[@]}" $((9101 + CONSOLE_OFFSET)) $((9102 + CONSOLE_OFFSET)) $((9103 + CONSOLE_OFFSET)) $((9104 + CONSOLE_OFFSET)) 7443 7444 7445 7446 7447 7448 7543 7545 7547 8443 8445 8447; do
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

bold "development certificates in $CERTS: a CA, vmappd's, and clients operator (the CLI) and ${AGENTS[*]}"
clients=$(IFS=,; echo "operator,${AGENTS[*]},$SIGNED_VM")
run "$BIN/vmappd" certs --dir "$CERTS" --hosts 127.0.0.1,localhost --clients "$clients"

# start_node I: vmappd node I (of CLUSTER), its data in $STATE/vmappd[-I].
start_node() {
  local i=$1 port=$((7441 + 2 * $1)) data=$STATE/vmappd log=$STATE/logs/vmappd.log args=()
  if [ "$CLUSTER" != 1 ]; then
    data=$STATE/vmappd-$i log=$STATE/logs/vmappd-$i.log
    args=(--node-id "n$i" --raft-listen "127.0.0.1:$((7541 + 2 * i))" --cluster-key "$STATE/cluster.key")
    [ "$i" = 1 ] || args+=(--join "${NODES[0]}")
  fi
  "$BIN/vmappd" --data "$data" --listen "127.0.0.1:$port" --metrics "127.0.0.1:$((port + 1))" --http-listen "127.0.0.1:$((port + 1000))" \
    --tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server-key.pem" --tls-client-ca "$CERTS/ca.pem" --tls-bind-machines \
    --regions "$HERE/regions.yaml" "${args[@]}" >>"$log" 2>&1 &
  echo $! >"$STATE/vmappd-$i.pid"
  disown # its kill -9 in the failover is the demo's, not a failure to report
}

if [ "$CLUSTER" = 1 ]; then
  bold "starting vmappd on $VMAPPD_ADDR with mutual TLS (metrics on http://$METRICS_ADDR/metrics)"
  start_node 1
else
  bold "starting a cluster of $CLUSTER vmappd nodes on ${NODES[*]} with mutual TLS: n1 starts it, the others join (metrics on 7444, 7446, 7448)"
  head -c 32 /dev/urandom | base64 >"$STATE/cluster.key" && chmod 600 "$STATE/cluster.key"
  start_node 1
  wait_for "vmappd n1" "$STATE/logs/vmappd-1.log" test -s "$STATE/vmappd-1/admin.token"
  for i in $(seq 2 "$CLUSTER"); do start_node "$i"; done
fi
# Its first start writes the operator's token (Owner of every tenant).
export VMAPP_TOKEN_FILE=$STATE/vmappd/admin.token
[ "$CLUSTER" = 1 ] || export VMAPP_TOKEN_FILE=$STATE/vmappd-1/admin.token
VMAPPD_LOG=$STATE/logs/vmappd.log
[ "$CLUSTER" = 1 ] || VMAPPD_LOG=$STATE/logs/vmappd-1.log
wait_for vmappd "$VMAPPD_LOG" "$BIN/vmapp" region list
if [ "$CLUSTER" != 1 ]; then
  for _ in $(seq 150); do
    [ "$("$BIN/vmapp" cluster status -o json 2>/dev/null | grep -c '"Follower"')" = $((CLUSTER - 1)) ] && break
    sleep 0.2
  done
  run "$BIN/vmapp" cluster status
fi
run "$BIN/vmapp" whoami
run "$BIN/vmapp" region list

# sample VERSION: the hello tarball of that version.
sample() {
  local dir=$STATE/build/hello-$1
  rm -rf "$dir" && mkdir -p "$dir" && cp -r "$HERE/sample/hello/." "$dir/"
  sed -i "s/@VERSION@/$1/" "$dir/bin/hello"
  tar -C "$dir" -czf "$STATE/hello-$1.tar.gz" .
}

# wait_installed APP VERSION COUNT: until COUNT machines report APP at
# VERSION Installed.
wait_installed() {
  for _ in $(seq 300); do
    n=$("$BIN/vmapp" inventory --app "$1" --state Installed 2>/dev/null | awk -v v="$2" '$5 == v' | wc -l)
    [ "$n" -ge "$3" ] && return 0
    sleep 0.2
  done
  echo "demo: $1 $2 was not installed on $3 machines in time:" >&2
  "$BIN/vmapp" inventory >&2 || true
  exit 1
}

bold "the operator makes the gallery and a token for the release pipeline: Contributor of that gallery only"
run "$BIN/vmapp" gallery create demo --location eastus --description "vmapp demo gallery"
run "$BIN/vmapp" token create --name "demo pipeline" --role contributor --gallery demo --secret-file "$STATE/pipeline.token"
OPERATOR_TOKEN_FILE=$VMAPP_TOKEN_FILE
export VMAPP_TOKEN_FILE=$STATE/pipeline.token
printf '\033[2m$ %s\033[0m\n' "$BIN/vmapp vm create --name intruder --region eastus --os linux   # as the pipeline"
"$BIN/vmapp" vm create --name intruder --region eastus --os linux 2>&1 || true

bold "publishing two applications as the pipeline: hello (a tarball with install/update/remove scripts) and motd (a script and a default configuration)"
sample 1.0.0
run "$BIN/vmapp" app create --gallery demo hello --os linux --description "prints hello"
run "$BIN/vmapp" version create --gallery demo --app hello 1.0.0 --location eastus \
  --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
  --target-region eastus=2 --target-region westus=2 --target-region northeurope \
  --package "$STATE/hello-1.0.0.tar.gz" --wait
run "$BIN/vmapp" app create --gallery demo motd --os linux --description "message of the day"
run "$BIN/vmapp" version create --gallery demo --app motd 1.0.0 --location eastus \
  --install "mkdir -p ../../../bin ../../../etc && install -m 0755 motd ../../../bin/motd && cp motd-config ../../../etc/motd" \
  --remove "rm -f ../../../bin/motd ../../../etc/motd" \
  --target-region eastus --target-region westus \
  --package "$HERE/sample/motd/motd" --config "$HERE/sample/motd/default-config" --wait

bold "replication status"
run "$BIN/vmapp" version show --gallery demo --app hello 1.0.0

bold "four machines (as the operator), each agent with its own credential: vm1 and vm2 in eastus, and the scale set web in westus with two instances"
export VMAPP_TOKEN_FILE=$OPERATOR_TOKEN_FILE
mkdir -p "$STATE/agents"
run "$BIN/vmapp" vm create --name vm1 --region eastus --os linux --agent-token-file "$STATE/agents/vm1.token"
run "$BIN/vmapp" vm create --name vm2 --region eastus --os linux --agent-token-file "$STATE/agents/vm2.token"
run "$BIN/vmapp" vmss create --name web --region westus --os linux
run "$BIN/vmapp" vm create --name web-0 --vmss web --agent-token-file "$STATE/agents/web-0.token"
run "$BIN/vmapp" vm create --name web-1 --vmss web --agent-token-file "$STATE/agents/web-1.token"
# start_agent VM: the scale set's instances serve peers.
start_agent() {
  local vm=$1 peer=()
  [[ $vm == web-* ]] && peer=(--peer-listen 127.0.0.1:0)
  mkdir -p "$STATE/agents/$vm"
  "$BIN/vmapp-agent" --server "$VMAPPD_ADDR" --vm "$vm" --token-file "$STATE/agents/$vm.token" --root "$STATE/agents/$vm" \
    --ca "$CERTS/ca.pem" --cert "$CERTS/$vm.pem" --key "$CERTS/$vm-key.pem" "${peer[@]}" >"$STATE/logs/agent-$vm.log" 2>&1 &
  echo $! >"$STATE/agent-$vm.pid"
}
for vm in "${AGENTS[@]}"; do
  [[ $vm == web-1 ]] || start_agent "$vm"
done
echo "  started 3 agents, each with its own credential and client certificate (roots in $STATE/agents/); web-1 starts once web-0 holds hello"

bold "deploying: hello first (order 1), then motd (order 2), with a configuration override on vm1"
printf 'Hello from the demo: this configuration overrides the default.\n' >"$STATE/motd-vm1.txt"
run "$BIN/vmapp" vm app set --vm vm1 --app demo/hello/1.0.0 --order 1
run "$BIN/vmapp" vm app set --vm vm1 --app demo/motd/1.0.0 --order 2 --config "$STATE/motd-vm1.txt"
run "$BIN/vmapp" vm app set --vm vm2 --app demo/hello/1.0.0 --order 1 --treat-failure-as-deployment-failure
run "$BIN/vmapp" vm app set --vm vm2 --app demo/motd/1.0.0 --order 2
run "$BIN/vmapp" vmss app set --vmss web --app demo/hello/1.0.0
wait_installed demo/hello 1.0.0 3
bold "the scale set's second instance: web-1 reads hello from web-0 (a peer of its scale set), not from westus's store"
start_agent web-1
wait_installed demo/hello 1.0.0 4
printf '\033[2m$ %s\033[0m\n' "grep 'download: complete' $STATE/logs/agent-web-1.log"
grep 'download: complete' "$STATE/logs/agent-web-1.log" | sed 's/^/  /'
wait_installed demo/motd 1.0.0 2
run "$BIN/vmapp" vm show vm1
printf '\033[2m$ %s\033[0m\n' "$STATE/agents/vm1/bin/hello; $STATE/agents/vm1/bin/motd"
"$STATE/agents/vm1/bin/hello"; "$STATE/agents/vm1/bin/motd"

bold "upgrading hello to 1.1.0: vm1 by hand (with its update command), the scale set by a rollout in two waves (web-0, soaked 5 s, then web-1)"
sample 1.1.0
run env VMAPP_TOKEN_FILE="$STATE/pipeline.token" "$BIN/vmapp" version create --gallery demo --app hello 1.1.0 --location eastus \
  --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
  --update "tar -xzf hello && ./update.sh" \
  --target-region eastus=2 --target-region westus=2 \
  --package "$STATE/hello-1.1.0.tar.gz" --wait
run "$BIN/vmapp" vm app set --vm vm1 --app demo/hello/1.1.0 --order 1
run "$BIN/vmapp" rollout create hello-1.1.0 --app demo/hello --version 1.1.0 --target vmss:web --waves 1,100% --soak 5s --max-errors 0 --rollback-on-halt
run "$BIN/vmapp" rollout watch hello-1.1.0
run "$BIN/vmapp" rollout show hello-1.1.0
wait_installed demo/hello 1.1.0 3
printf '\033[2m$ %s\033[0m\n' "$STATE/agents/vm1/bin/hello; $STATE/agents/web-0/bin/hello"
"$STATE/agents/vm1/bin/hello"; "$STATE/agents/web-0/bin/hello"

bold "signed versions: gallery 'signed' trusts the release key and requires signatures; $SIGNED_VM's agent verifies with a trust file of its own"
printf '\033[2m$ %s\033[0m\n' "$BIN/vmapp key create --out $STATE/release.key --no-passphrase > $STATE/release.pub"
"$BIN/vmapp" key create --out "$STATE/release.key" --no-passphrase >"$STATE/release.pub"
run "$BIN/vmapp" gallery create signed --location eastus --description "signed versions only"
run "$BIN/vmapp" gallery trust add signed --key "$STATE/release.pub" --name release --require-signatures
run "$BIN/vmapp" app create --gallery signed hello --os linux --description "prints hello, signed"
run "$BIN/vmapp" version create --gallery signed --app hello 1.0.0 --location eastus \
  --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
  --target-region eastus --package "$STATE/hello-1.0.0.tar.gz" --sign-key "$STATE/release.key" --wait
run "$BIN/vmapp" version signatures --gallery signed --app hello 1.0.0 --statement "$STATE/hello.statement"
if command -v minisign >/dev/null; then
  # The comment names the key id as minisign does, without leading zeros;
  # signature files are named with its 16 hex digits.
  key_id=$(printf '%016X' "0x$(sed -n 's/^untrusted comment: minisign public key //p' "$STATE/release.pub")")
  run minisign -V -p "$STATE/release.pub" -m "$STATE/hello.statement" -x "$STATE/hello.statement.$key_id.minisig"
fi
run "$BIN/vmapp" version create --gallery signed --app hello 1.0.1 --location eastus \
  --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
  --target-region eastus --package "$STATE/hello-1.1.0.tar.gz" --wait
run "$BIN/vmapp" vm create --name "$SIGNED_VM" --region eastus --os linux --agent-token-file "$STATE/agents/$SIGNED_VM.token"
printf '\033[2m$ %s\033[0m\n' "$BIN/vmapp vm app set --vm $SIGNED_VM --app signed/hello/1.0.1   # unsigned: vmappd refuses"
"$BIN/vmapp" vm app set --vm "$SIGNED_VM" --app signed/hello/1.0.1 2>&1 || true
cp "$STATE/release.pub" "$STATE/agents/$SIGNED_VM.trust"
mkdir -p "$STATE/agents/$SIGNED_VM"
printf '\033[2m$ %s\033[0m\n' "vmapp-agent --vm $SIGNED_VM --trust-file $STATE/agents/$SIGNED_VM.trust ..."
"$BIN/vmapp-agent" --server "$VMAPPD_ADDR" --vm "$SIGNED_VM" --token-file "$STATE/agents/$SIGNED_VM.token" --root "$STATE/agents/$SIGNED_VM" \
  --trust-file "$STATE/agents/$SIGNED_VM.trust" \
  --ca "$CERTS/ca.pem" --cert "$CERTS/$SIGNED_VM.pem" --key "$CERTS/$SIGNED_VM-key.pem" >"$STATE/logs/agent-$SIGNED_VM.log" 2>&1 &
echo $! >"$STATE/agent-$SIGNED_VM.pid"
echo "  the signed version installs; motd (gallery demo, which doesn't require signatures: vmappd deploys it) is refused by the agent"
run "$BIN/vmapp" vm app set --vm "$SIGNED_VM" --app signed/hello/1.0.0 --order 1
run "$BIN/vmapp" vm app set --vm "$SIGNED_VM" --app demo/motd/1.0.0 --order 2
wait_installed signed/hello 1.0.0 1
for _ in $(seq 300); do
  "$BIN/vmapp" inventory --app demo/motd --state Failed 2>/dev/null | grep -q "^$SIGNED_VM " && break
  sleep 0.2
done
run "$BIN/vmapp" vm show "$SIGNED_VM"
printf '\033[2m$ %s\033[0m\n' "$STATE/agents/$SIGNED_VM/bin/hello"
"$STATE/agents/$SIGNED_VM/bin/hello"

bold "the fleet"
run "$BIN/vmapp" inventory

if [ "$CLUSTER" != 1 ]; then
  leader=$("$BIN/vmapp" cluster status -o json | sed -n 's/.*"leaderId": *"n\([0-9]*\)".*/\1/p' | head -1)
  bold "failover: kill -9 the leader (n$leader); the others elect a new one, and the cluster goes on"
  printf '\033[2m$ %s\033[0m\n' "kill -9 \$(cat $STATE/vmappd-$leader.pid)"
  kill -9 "$(cat "$STATE/vmappd-$leader.pid")"
  for _ in $(seq 150); do
    "$BIN/vmapp" cluster status -o json 2>/dev/null | grep -q "\"leaderId\": *\"n[^$leader\"]" && break
    sleep 0.2
  done
  run "$BIN/vmapp" cluster status
  bold "publishing hello 1.2.0 through the cluster that is left: the new leader replicates it and rolls it out to the scale set"
  sample 1.2.0
  VMAPP_TOKEN_FILE=$STATE/pipeline.token run "$BIN/vmapp" version create --gallery demo --app hello 1.2.0 --location eastus \
    --install "tar -xzf hello && ./install.sh" --remove "tar -xzf hello && ./remove.sh" \
    --update "tar -xzf hello && ./update.sh" \
    --target-region eastus=2 --target-region westus=2 \
    --package "$STATE/hello-1.2.0.tar.gz" --wait
  run "$BIN/vmapp" rollout create hello-1.2.0 --app demo/hello --version 1.2.0 --target vmss:web --waves 100%
  run "$BIN/vmapp" rollout watch hello-1.2.0
  wait_installed demo/hello 1.2.0 2
  printf '\033[2m$ %s\033[0m\n' "$STATE/agents/web-0/bin/hello"
  "$STATE/agents/web-0/bin/hello"
  bold "n$leader starts again and catches up"
  start_node "$leader"
  for _ in $(seq 600); do
    "$BIN/vmapp" cluster status -o json 2>/dev/null | grep -q '"Unreachable"' || break
    sleep 0.2
  done
  run "$BIN/vmapp" cluster status
fi

bold "a token to sign in to the web console with: Contributor of the default tenant"
VMAPP_TOKEN_FILE=$OPERATOR_TOKEN_FILE run "$BIN/vmapp" token create --name "demo console" --role contributor --secret-file "$STATE/console.token"

cat <<EOF

$(printf '\033[1m')The demo cluster is running.$(printf '\033[0m')
  3 regions as 4 MinIO processes, vmappd ($CLUSTER node(s), mutual TLS), and 5 agents (vm1,
  vm2 in eastus; web-0, web-1 of the scale set web in westus; vm3 in eastus,
  verifying signatures with $STATE/agents/vm3.trust).

  Logs:      $STATE/logs/ (vmappd*.log, minio-<port>.log, agent-<vm>.log)
  TLS:       $CERTS/ (development CA; client certificates operator, ${AGENTS[*]} $SIGNED_VM)
  Signing:   $STATE/release.key (unencrypted, for the demo), release.pub
  CLI:       export VMAPP_SERVER=$VMAPPD_ADDR VMAPP_TOKEN_FILE=$OPERATOR_TOKEN_FILE \\
               VMAPP_CA=$VMAPP_CA VMAPP_CERT=$VMAPP_CERT VMAPP_KEY=$VMAPP_KEY
             $BIN/vmapp vm show web-0
             $BIN/vmapp version watch --gallery demo --app hello 1.1.0
  Or save them as a context (~/.config/vmapp/config.yaml) once:
             $BIN/vmapp config set-context demo --server $VMAPPD_ADDR --token-file $OPERATOR_TOKEN_FILE \\
               --ca $VMAPP_CA --cert $VMAPP_CERT --key $VMAPP_KEY --use
  REST API:  https://$REST_ADDR (the same TLS and tokens; the paths in /openapi.json)
             curl -s --cacert $VMAPP_CA --cert $VMAPP_CERT --key $VMAPP_KEY \
               -H "Authorization: Bearer \$(cat $OPERATOR_TOKEN_FILE)" https://$REST_ADDR/galleries/demo/applications/hello/versions
  Console:   $CONSOLE_URL  (the certificate is the development CA's, $CERTS/ca.pem:
             trust it or accept the warning) sign in with the token
             $(cat "$STATE/console.token")
             (a Contributor's, also in $STATE/console.token; each node serves it on its port + 1000)
  Metrics:   curl -s http://$METRICS_ADDR/metrics | grep vmapp_replication_bytes_total
  Stop:      make down   (stops every process and removes $STATE)
EOF
