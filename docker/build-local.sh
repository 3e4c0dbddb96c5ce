#!/usr/bin/env bash
# Builds the root filesystem of errand's agent image without a container
# registry: a Debian `minbase` from the host's own Debian mirror (debootstrap),
# plus the host's Node.js, errand's user and git settings. Writes one tar file
# that `errand sandbox prepare docker` imports as `errand-agent:<version>`.
#
#   build-local.sh --cache DIR --out FILE [--check-bin PATH]...
#
#   --cache DIR      where the debootstrap result is kept (reused: a second build is quick)
#   --out FILE       the image's root filesystem, as a tar
#   --check-bin P    a host binary mounted into the sandbox at run time (errand itself):
#                    shared libraries it needs that the image lacks are copied in
#
# The suite is the host's Debian release (so the host's glibc-linked binaries run
# inside), the mirror the first Debian one apt is configured with. Needs root
# (debootstrap), sudo otherwise. The harness CLIs are not in the image: errand
# mounts its installed copy read-only at /opt/errand/harness, as the local
# sandbox does. docker/Dockerfile is the equivalent image for machines that can
# pull from a registry.
set -euo pipefail

cache="" out="" check_bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --check-bin) check_bins+=("$2"); shift 2 ;;
    *) echo "build-local.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$cache" ] && [ -n "$out" ] || { echo "usage: build-local.sh --cache DIR --out FILE [--check-bin PATH]" >&2; exit 2; }

say() { echo "prepare: $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The host's release: its glibc is the one errand and Node.js were linked against.
suite=""
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  suite=$(. /etc/os-release && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}") || true
fi
if [ -z "$suite" ]; then
  suite=bookworm
  say "this host is not Debian: building a $suite image (host binaries mounted into it may not run)"
fi
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

# The Debian mirror apt already uses (deb822 .sources or one-line .list files).
mirror=$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | grep -E '/debian/?$' | head -n 1
) || true
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || {
  echo "build-local.sh: debootstrap is not installed: run scripts/setup --docker (or sudo apt-get install debootstrap)" >&2
  exit 1
}

mkdir -p "$cache"
base="$cache/rootfs-$suite-$arch-minbase.tar.gz"
if [ -s "$base" ]; then
  say "reusing the cached Debian $suite base ($base)"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/errand-debootstrap.XXXXXX")
  trap '$SUDO rm -rf "$work"' EXIT
  say "debootstrap $suite ($arch) from $mirror: a few minutes, once"
  $SUDO debootstrap --variant=minbase --arch="$arch" \
    --include=git,ca-certificates,python3,python3-venv,procps,bash \
    "$suite" "$work/root" "$mirror" 2>&1 | while IFS= read -r line; do
      case "$line" in "I: Retrieving"*|"I: Validating"*|"I: Unpacking"*|"I: Configuring"*|"I: Extracting"*) ;; *) say "$line" ;; esac
    done
  [ -x "$work/root/bin/sh" ] || { echo "build-local.sh: debootstrap failed" >&2; exit 1; }
  # Package lists and caches are not needed at run time.
  $SUDO rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*
  $SUDO tar -C "$work/root" --numeric-owner -czf "$base.part" .
  mv "$base.part" "$base"
  $SUDO rm -rf "$work"
  trap - EXIT
  say "cached the base as $base"
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/errand-rootfs.XXXXXX")
trap '$SUDO rm -rf "$root"' EXIT
$SUDO tar -C "$root" --numeric-owner -xzf "$base"

# Copies a host file (following links) into the image at the same path, with
# the shared libraries it needs that the image does not have.
add_with_libs() {
  local bin="$1" dest="$2"
  $SUDO install -D -m 0755 "$bin" "$root$dest"
  ldd "$bin" 2>/dev/null | awk '/=> \// {print $3} /^\s*\/[^ ]+ \(/ {print $1}' | while read -r lib; do
    if [ ! -e "$root$lib" ] && [ ! -e "$root/usr$lib" ]; then
      say "adding $lib (needed by $(basename "$bin"))"
      $SUDO install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    fi
  done
}

node=$(command -v node || true)
if [ -n "$node" ]; then
  node=$(readlink -f "$node")
  say "adding Node.js $("$node" --version) from $node"
  add_with_libs "$node" /usr/local/bin/node
else
  say "warning: Node.js is not installed on this host; the image has none (harnesses that need it will fail)"
fi
for b in "${check_bins[@]}"; do
  [ -e "$b" ] || continue
  ldd "$b" 2>/dev/null | awk '/=> \// {print $3}' | while read -r lib; do
    if [ ! -e "$root$lib" ] && [ ! -e "$root/usr$lib" ]; then
      say "adding $lib (needed by $(basename "$b"))"
      $SUDO install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    fi
  done
done

# The agent: uid/gid 10001, HOME /home/agent. Git inside trusts every repository
# (the workspace's top directory stays owned by errand on the host).
$SUDO sh -s "$root" <<'EOF'
set -e
r="$1"
grep -q '^agent:' "$r/etc/passwd" || echo 'agent:x:10001:10001:errand agent:/home/agent:/bin/bash' >>"$r/etc/passwd"
grep -q '^agent:' "$r/etc/group" || echo 'agent:x:10001:' >>"$r/etc/group"
grep -q '^agent:' "$r/etc/shadow" 2>/dev/null || echo 'agent:!:19000::::::' >>"$r/etc/shadow"
printf '[safe]\n\tdirectory = *\n[init]\n\tdefaultBranch = main\n' >"$r/etc/gitconfig"
mkdir -p "$r/workspace" "$r/home/agent" "$r/opt/errand/harness" "$r/opt/errand/bin" "$r/opt/errand/shims"
chown 10001:10001 "$r/workspace" "$r/home/agent"
chmod 1777 "$r/tmp"
EOF

mkdir -p "$(dirname "$out")"
$SUDO tar -C "$root" --numeric-owner -cf "$out.part" .
$SUDO chown "$(id -u):$(id -g)" "$out.part"
mv "$out.part" "$out"
say "root filesystem ready ($(du -h "$out" | cut -f1))"
