#!/bin/sh
# Before vmapp-agent's package is removed (not upgraded: deb "remove", rpm 0
# versions left): the service stopped and disabled.
set -e
case "$1" in
remove | 0)
	if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
		systemctl disable --now vmapp-agent.service || true
	fi
	;;
esac
