#!/bin/sh
# After vmapp-agent's package is installed. The agent is not started:
# it needs this machine's name and credential first.
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
echo "vmapp-agent installed: set VMAPP_VM and VMAPP_SERVER in /etc/default/vmapp-agent, put the machine's credential in /etc/vmapp/agent.token, then systemctl enable --now vmapp-agent"
