#!/usr/bin/env bash
# Install: copy the program into $PREFIX/bin (the agent's root by default:
# the agent runs this in <root>/<gallery>/hello/<version>/).
set -euo pipefail
PREFIX=${VMAPP_PREFIX:-$PWD/../../..}
mkdir -p "$PREFIX/bin"
install -m 0755 bin/hello "$PREFIX/bin/hello"
echo "installed hello $(grep -o 'sample [0-9.]*' bin/hello) into $PREFIX/bin"
