#!/usr/bin/env bash
# make images: builds the compose topology's images with no container
# registry (air-gapped sites, and machines whose engine starts empty).
#
# Local stand-ins for the base images deploy/docker/Dockerfile names:
#   Debian (debian:bookworm-slim): a root file system made with debootstrap
#     from the machine's Debian mirror, `docker import`ed;
#   static (distroless/static): FROM scratch with /etc/passwd (nonroot,
#     65532), CA certificates and /tmp, `docker import`ed;
#   MinIO (minio/minio): the pinned MinIO the tests use, built from source
#     (install-minio), on the Debian stand-in.
# The Go binaries are built here on the host (CGO_ENABLED=0, static, into
# bin/docker) and taken as they are (BINARIES=prebuilt), so no Go image,
# module proxy or compile is needed in the image build. Then the product
# images, from the same Dockerfile with the stand-ins as build arguments:
# vmapp/minio, vmapp/vmappd, vmapp/agent (and vmapp/build, the build stage,
# kept as the cache), tagged $VMAPP_TAG (default dev), the names
# docker-compose.yml uses.
#
# The debootstrap root file system (the slow part: Debian's packages are
# downloaded once) is cached in $VMAPP_DOCKER_CACHE (default
# ~/.cache/vmapp/docker), keyed by what it is made from; a stand-in image
# already in the engine is not built again. To take Debian's newest
# packages, remove the cache and the vmapp-local/* images.
#
# Needs: a Docker engine, Go, root (debootstrap), and debootstrap (installed
# with apt-get when missing). Environment: VMAPP_TAG, VMAPP_DOCKER_CACHE,
# DEBIAN_MIRROR (default: the machine's apt source for the suite).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${VMAPP_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmapp/docker}
TAG=${VMAPP_TAG:-dev}
SUITE=bookworm
INCLUDE=ca-certificates
# The recipe's version: change it when the stand-ins are made differently.
RECIPE=1

say() { printf '\033[1mimages: %s\033[0m\n' "$*"; }
die() { echo "images: $*" >&2; exit 1; }

# apt_mirror prints the machine's Debian mirror for $SUITE, from the
# one-line (sources.list) or deb822 (*.sources) apt sources.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    sed -e 's/\[[^]]*\]//' "$f" | awk -v s="$SUITE" '$1 == "deb" && $3 == s { print $2; exit }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v s="$SUITE" 'BEGIN { RS = "" } {
      uri = ""; ok = 0
      n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        split(lines[i], w, /[ \t]+/)
        if (w[1] == "URIs:") uri = w[2]
        if (w[1] == "Suites:") for (j = 2; j in w; j++) if (w[j] == s) ok = 1
      }
      if (ok && uri != "") { print uri; exit }
    }' "$f"
  done
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
ARCH=$(docker version -f '{{.Server.Arch}}')
MIRROR=${DEBIAN_MIRROR:-$(apt_mirror | head -1)}
[ -n "$MIRROR" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list*: set DEBIAN_MIRROR"
KEY=$(printf '%s\n' "$RECIPE" "$SUITE" "$ARCH" "$INCLUDE" "$MIRROR" | sha256sum | cut -c1-12)
DEBIAN=vmapp-local/debian:$SUITE-$KEY
STATIC=vmapp-local/static:$KEY
mkdir -p "$CACHE"

# debian_rootfs makes $CACHE/debian-$SUITE-$KEY.tar with debootstrap.
debian_rootfs() {
  local tar=$CACHE/debian-$SUITE-$KEY.tar dir
  [ -s "$tar" ] && return 0
  [ "$(id -u)" = 0 ] || die "debootstrap needs root; run make images as root once (the result is cached in $CACHE)"
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  say "debootstrap $SUITE ($ARCH, minbase + $INCLUDE) from $MIRROR (once; cached in $CACHE)"
  dir=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  # A debootstrap cut short may leave /proc and /sys mounted inside: never
  # remove across them.
  trap 'umount -l "$dir/proc" "$dir/sys" 2>/dev/null || true; rm -rf --one-file-system "$dir"' EXIT
  debootstrap --variant=minbase --include="$INCLUDE" --arch="$ARCH" "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 ||
    { tail -n 30 "$dir.log" >&2; die "debootstrap failed (log: $dir.log)"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir.log"
  tar --numeric-owner -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  umount -l "$dir/proc" "$dir/sys" 2>/dev/null || true
  rm -rf --one-file-system "$dir"
  trap - EXIT
}

# static_base imports $STATIC: what distroless/static gives a static binary.
static_base() {
  local dir
  dir=$(mktemp -d)
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/home/nonroot"
  tar -xOf "$CACHE/debian-$SUITE-$KEY.tar" ./etc/ssl/certs/ca-certificates.crt >"$dir/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  chmod 1777 "$dir/tmp"
  tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf - . |
    docker import --change 'USER 65532:65532' --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' - "$STATIC" >/dev/null
  rm -rf "$dir"
}

if ! have_image "$DEBIAN"; then
  debian_rootfs
  say "importing $DEBIAN"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]' \
    "$CACHE/debian-$SUITE-$KEY.tar" "$DEBIAN" >/dev/null
fi
if ! have_image "$STATIC"; then
  debian_rootfs
  say "importing $STATIC"
  static_base
fi

MINIO_BIN=$(cd "$ROOT" && go run ./internal/testkit/miniotest/cmd/install-minio)
MINIO_VERSION=$(cat "$MINIO_BIN.version")
MINIO=vmapp-local/minio:$(printf '%s\n' "$MINIO_VERSION" "$KEY" | sha256sum | cut -c1-12)
if ! have_image "$MINIO"; then
  say "building $MINIO (MinIO $MINIO_VERSION, from source, on $DEBIAN)"
  ctx=$(mktemp -d)
  cp "$MINIO_BIN" "$ctx/minio"
  printf 'FROM %s\nCOPY minio /usr/bin/minio\nEXPOSE 9000\nENTRYPOINT ["/usr/bin/minio"]\n' "$DEBIAN" |
    docker build -q --force-rm -t "$MINIO" -f - "$ctx" >/dev/null
  rm -rf "$ctx"
fi

say "building vmappd, vmapp and vmapp-agent for linux/$ARCH on the host"
(cd "$ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath -ldflags="-s -w" -o bin/docker/ \
  ./cmd/vmappd ./cmd/vmapp ./cmd/vmapp-agent)

args=(--build-arg GO_IMAGE="$DEBIAN" --build-arg BINARIES=prebuilt --build-arg RUNTIME_STATIC="$STATIC"
  --build-arg RUNTIME_DEBIAN="$DEBIAN" --build-arg MINIO_IMAGE="$MINIO")
say "building vmapp/minio:$TAG"
# The minio stage uses nothing from the build context: send none.
docker build -q --force-rm --target minio -t "vmapp/minio:$TAG" "${args[@]}" - <"$ROOT/deploy/docker/Dockerfile" >/dev/null
# The build stage is tagged too, so that it stays cached until the sources
# change; the ones it replaces (untagged) are dropped rather than left to
# pile up.
for target in build vmappd agent; do
  say "building vmapp/$target:$TAG"
  docker build -q --force-rm -f "$ROOT/deploy/docker/Dockerfile" --target "$target" -t "vmapp/$target:$TAG" "${args[@]}" "$ROOT" >/dev/null
done
docker image prune -f --filter label=org.vmapp.image=build >/dev/null
say "done: vmapp/minio:$TAG vmapp/vmappd:$TAG vmapp/agent:$TAG (bases $DEBIAN, $STATIC, $MINIO)"
