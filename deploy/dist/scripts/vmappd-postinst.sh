#!/bin/sh
# After vmappd's package is installed: the system user the unit runs as,
# and /etc/vmapp readable by it (TLS keys go there). DPKG_ROOT is set when
# the package is installed into another root (dpkg --root).
set -e
root="${DPKG_ROOT:-}"
if ! grep -q '^vmappd:' "$root/etc/passwd" 2>/dev/null; then
	if [ -n "$root" ]; then
		useradd --root "$root" --system --user-group --home-dir /var/lib/vmappd --no-create-home --shell /usr/sbin/nologin vmappd
	else
		useradd --system --user-group --home-dir /var/lib/vmappd --no-create-home --shell /usr/sbin/nologin vmappd
	fi
fi
# By number: under DPKG_ROOT, names resolve in this system's files.
gid="$(grep '^vmappd:' "$root/etc/group" | cut -d: -f3)"
chown "root:$gid" "$root/etc/vmapp"
chmod 0750 "$root/etc/vmapp"
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
echo "vmappd installed: edit /etc/vmapp/regions.yaml and /etc/default/vmappd, then systemctl enable --now vmappd"
