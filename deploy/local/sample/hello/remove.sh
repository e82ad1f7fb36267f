#!/usr/bin/env bash
set -euo pipefail
PREFIX=${VMAPP_PREFIX:-$PWD/../../..}
rm -f "$PREFIX/bin/hello"
echo "removed hello from $PREFIX/bin"
