# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings/helpers for infra/postgres/{start,stop,status,env}. Sourced, not run.
#
# Environment overrides:
#   PGPORT        TCP port on 127.0.0.1                         (default 55432)
#   PG_DATA_DIR   data directory                                (default <repo>/var/postgres/data,
#                 or /var/tmp/careplan-pg-<hash>/data when the OS user "postgres" cannot reach <repo>)
#   PG_BIN        directory holding initdb/pg_ctl/postgres      (default newest /usr/lib/postgresql/*/bin)
#   PG_START_TIMEOUT  seconds to wait for readiness             (default 60)

PG_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PG_SCRIPT_DIR/../.." && pwd)"

PG_HOST=127.0.0.1
PG_PORT="${PGPORT:-55432}"
PG_APP_USER=careplan
PG_APP_PASSWORD=careplan
PG_APP_DB=careplan
PG_TEST_DB=careplan_test
PG_SUPERUSER=postgres
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

pg_die() { echo "postgres: ERROR: $*" >&2; exit 1; }
pg_log() { echo "postgres: $*" >&2; }

pg_is_root() { [[ "$(id -u)" == 0 ]]; }

# Find the server binaries. /usr/local/bin/{pg_ctl,postgres} may exist as symlinks into
# /usr/lib/postgresql/<ver>/bin; we always use the versioned directory directly.
pg_find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] \
      || pg_die "PG_BIN=$PG_BIN does not contain postgres, initdb and pg_ctl"
    echo "$PG_BIN"; return 0
  fi
  local d best="" bestv=-1 v
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/postgres" && -x "$d/initdb" && -x "$d/pg_ctl" ]] || continue
    v="$(basename "$(dirname "$d")")"
    [[ "$v" =~ ^[0-9]+$ ]] || continue
    if (( v > bestv )); then bestv=$v; best=$d; fi
  done
  [[ -n "$best" ]] || return 1
  echo "$best"
}

# Short stable hash of the repo path (for the /var/tmp fallback location).
pg_repo_hash() { printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12; }

# Can OS user $1 search (traverse) existing directory $2 and all its ancestors?
pg_user_can_reach() {
  local user=$1 dir=$2
  while [[ ! -e "$dir" ]]; do dir="$(dirname "$dir")"; done
  runuser -u "$user" -- test -x "$dir" 2>/dev/null
}

# Decide data dir / socket dir / log file. Deterministic, so start/stop/status agree.
pg_resolve_paths() {
  local default_base="$REPO_ROOT/var/postgres"
  local fallback_base
  fallback_base="/var/tmp/careplan-pg-$(pg_repo_hash)"
  if [[ -n "${PG_DATA_DIR:-}" ]]; then
    PG_DATA="$PG_DATA_DIR"
    PG_BASE="$(dirname "$PG_DATA")"
    PG_LOCATION_NOTE="PG_DATA_DIR override"
  elif pg_is_root && id -u "$PG_SUPERUSER" >/dev/null 2>&1 && ! pg_user_can_reach "$PG_SUPERUSER" "$default_base"; then
    PG_BASE="$fallback_base"
    PG_DATA="$PG_BASE/data"
    PG_LOCATION_NOTE="fallback: OS user '$PG_SUPERUSER' cannot traverse $REPO_ROOT"
  else
    PG_BASE="$default_base"
    PG_DATA="$PG_BASE/data"
    PG_LOCATION_NOTE="default"
  fi
  PG_SOCKET_DIR="$PG_BASE/run"
  PG_LOG_DIR="$PG_BASE/log"
  PG_LOG_FILE="$PG_LOG_DIR/postgres.log"
  # Unix socket paths are limited to ~107 bytes; fall back to a short private dir.
  if (( ${#PG_SOCKET_DIR} + ${#PG_PORT} + 12 > 100 )); then
    PG_SOCKET_DIR="/var/tmp/careplan-pg-$(pg_repo_hash)/run"
  fi
}

# Run a command as the server's OS user (postgres when we are root, else ourselves).
# fd 9 (the start/stop lock) is closed so a daemonised postmaster never inherits the lock.
pg_as_owner() {
  if pg_is_root; then
    (cd / && runuser -u "$PG_SUPERUSER" -- "$@" 9>&-)
  else
    "$@" 9>&-
  fi
}

# Serialise concurrent start/stop calls for the same cluster (bounded wait).
pg_lock() {
  mkdir -p "$PG_BASE"
  exec 9>"$PG_BASE/.lock"
  flock -w 120 9 || pg_die "another infra/postgres start/stop holds $PG_BASE/.lock"
}

# An existing cluster must be run by the major version that created it: prefer
# /usr/lib/postgresql/<PG_VERSION>/bin over the newest installed one (unless PG_BIN is set).
pg_bin_for_data() {
  [[ -z "${PG_BIN:-}" && -f "$PG_DATA/PG_VERSION" ]] || return 0
  local v; v="$(cat "$PG_DATA/PG_VERSION")"
  if [[ -x "/usr/lib/postgresql/$v/bin/postgres" ]]; then
    PG_BIN_DIR="/usr/lib/postgresql/$v/bin"
  elif [[ "$(basename "$(dirname "$PG_BIN_DIR")")" != "$v" ]]; then
    pg_die "$PG_DATA was created by PostgreSQL $v but only $PG_BIN_DIR is installed (apt-get install postgresql-$v, or move the data dir away)"
  fi
}

# Is *our* server (this data dir) running? pg_ctl status: 0 running, 3 not running, 4 no data dir.
pg_running() {
  [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
  pg_as_owner "$PG_BIN_DIR/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_dsn() { echo "postgresql://$PG_APP_USER:$PG_APP_PASSWORD@$PG_HOST:$PG_PORT/${1:-$PG_APP_DB}"; }

# If var/ is freshly created inside the repo, make it ignore itself so generated files
# never show up in git even if the repo's .gitignore lacks an entry for it.
pg_mark_var_ignored() {
  local var="$REPO_ROOT/var"
  mkdir -p "$var"
  [[ -e "$var/.gitignore" ]] || printf '# generated by infra/ scripts: everything here is local state\n*\n' >"$var/.gitignore"
}
