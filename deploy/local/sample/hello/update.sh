#!/usr/bin/env bash
# Update in place: replace the program.
set -euo pipefail
exec ./install.sh
