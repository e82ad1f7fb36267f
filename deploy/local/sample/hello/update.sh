#!/usr/bin/env bash
# Update in place from any older version: replace the program.
set -euo pipefail
echo "updating hello"
exec ./install.sh
