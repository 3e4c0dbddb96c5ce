#!/bin/sh
# /usr/local/bin/errand in deploy/compose's errand image (the entrypoint, and
# what `docker compose exec errand errand …` runs): errand itself, run from
# $ERRAND_HOME. Every sandbox is a sibling container that the engine starts
# with bind mounts named by *host* paths, so whatever errand mounts into one
# must lie under $ERRAND_HOME, which compose binds at the same path inside and
# outside:
#   - errand's binary (the guard and the egress bridge are errand, mounted into
#     every sandbox): copied to $ERRAND_HOME/bin when it differs, and run there;
#   - its private runtime directory (egress proxy sockets, the agents' passwd
#     and group files): XDG_RUNTIME_DIR=$ERRAND_HOME/run.
set -eu
: "${ERRAND_HOME:?ERRAND_HOME must be set}"
case "$ERRAND_HOME" in /*) ;; *) echo "errand: ERRAND_HOME must be absolute" >&2; exit 2 ;; esac
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$ERRAND_HOME/run}"
install -d -m 0700 "$XDG_RUNTIME_DIR"
real=/usr/local/lib/errand/errand
bin="$ERRAND_HOME/bin/errand"
if ! cmp -s "$real" "$bin"; then
  install -d -m 0755 "$ERRAND_HOME/bin"
  # A new file renamed into place: a running errand keeps its own.
  cp "$real" "$bin.new.$$"
  chmod 0755 "$bin.new.$$"
  mv -f "$bin.new.$$" "$bin"
fi
exec "$bin" "$@"
