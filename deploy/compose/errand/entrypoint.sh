#!/bin/sh
# errand's entrypoint in deploy/compose. Every sandbox is a sibling container
# that the engine starts with bind mounts named by *host* paths, so whatever
# errand mounts into one must lie under $ERRAND_HOME, which compose binds at the
# same path inside and outside:
#   - errand itself (the guard and the egress bridge are errand, mounted into
#     every sandbox): copied to $ERRAND_HOME/bin and run from there;
#   - its private runtime directory (egress proxy sockets, the agents' passwd
#     and group files): XDG_RUNTIME_DIR=$ERRAND_HOME/run.
set -eu
: "${ERRAND_HOME:?ERRAND_HOME must be set}"
case "$ERRAND_HOME" in /*) ;; *) echo "errand-entrypoint: ERRAND_HOME must be absolute" >&2; exit 2 ;; esac
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$ERRAND_HOME/run}"
install -d -m 0700 "$XDG_RUNTIME_DIR"
install -D -m 0755 /usr/local/bin/errand "$ERRAND_HOME/bin/errand"
exec "$ERRAND_HOME/bin/errand" "$@"
