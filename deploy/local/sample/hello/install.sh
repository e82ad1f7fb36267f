#!/usr/bin/env bash
# Install: unpack next to the package and link the program into $PREFIX/bin.
set -euo pipefail
PREFIX=${VMAPP_PREFIX:-$PWD/../../..}
mkdir -p "$PREFIX/bin"
install -m 0755 hello "$PREFIX/bin/hello"
echo "installed hello into $PREFIX/bin"
