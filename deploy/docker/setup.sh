#!/usr/bin/env bash
# The compose topology's one-shot set-up (service setup): once the cluster
# has written the operator's token, registers the machines the agents run
# as — vm1 and vm2 in eastus, the scale set web in westus with web-0 and
# web-1 — and saves each agent's credential in /tokens. Running it again
# changes nothing, but for a machine whose credential file is gone: it gets
# a new credential.
set -euo pipefail

# Node 1 writes the token once the cluster has elected it.
for _ in $(seq 120); do
  [ -s "$VMAPP_TOKEN_FILE" ] && vmapp whoami >/dev/null 2>&1 && break
  sleep 1
done
vmapp whoami

# exists KIND NAME: whether vmappd has it (false on NotFound; any other
# error stops the set-up).
exists() {
  local out
  if out=$(vmapp "$1" show "$2" 2>&1 >/dev/null); then return 0; fi
  case $out in *NotFound*) return 1 ;; esac
  echo "$out" >&2
  exit 1
}

# machine NAME ARGS...: creates the machine with ARGS unless it exists, and
# its credential file unless that exists.
machine() {
  local name=$1 token=/tokens/$1.token
  shift
  if ! exists vm "$name"; then
    rm -f "$token"
    vmapp vm create --name "$name" "$@" --agent-token-file "$token"
  elif [ ! -s "$token" ]; then
    vmapp vm credential "$name" --agent-token-file "$token"
  fi
}

machine vm1 --region eastus --os linux
machine vm2 --region eastus --os linux
exists vmss web || vmapp vmss create --name web --region westus --os linux
machine web-0 --vmss web
machine web-1 --vmss web
vmapp vm list
