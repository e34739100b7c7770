# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings/helpers for infra/oidc/{start,stop,status,env}. Sourced, not run.
#
# Two OpenID Providers (npm oidc-provider 9.13.3, infra/oidc/provider.mjs), one node process each:
#   idporten  citizens (patients, relatives)            http://127.0.0.1:${OIDC_TEST_IDPORTEN_PORT:-19443}
#   helseid   health personnel (coordinators, clinicians) http://127.0.0.1:${OIDC_TEST_HELSEID_PORT:-19444}
#
# Environment overrides:
#   OIDC_TEST_IDPORTEN_PORT / OIDC_TEST_HELSEID_PORT   ports on 127.0.0.1          (default 19443 / 19444)
#   OIDC_TEST_VAR_DIR      state root (keys, pids, logs)                   (default <repo>/var/oidc)
#   OIDC_TEST_START_TIMEOUT seconds start waits for discovery to answer     (default 30)
#   OIDC_TEST_STOP_TIMEOUT  seconds stop waits after SIGTERM                (default 10)
#   NODE                   node binary                                     (default /usr/bin/node, else node on PATH)
#   NPM                    npm binary                                      (default npm)
# Read by provider.mjs (so they must be the same for start and env): OIDC_TEST_RESOURCE,
# OIDC_TEST_AUDIENCE, OIDC_TEST_{PUBLIC,CONFIDENTIAL,SYSTEM}_CLIENT_ID, OIDC_TEST_{CONFIDENTIAL,SYSTEM}_CLIENT_SECRET,
# OIDC_TEST_REDIRECT_URIS, OIDC_TEST_POST_LOGOUT_REDIRECT_URIS, OIDC_TEST_ALLOW_LOOPBACK_REDIRECTS.

OIDC_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$OIDC_SCRIPT_DIR/../.." && pwd)"

OIDC_HOST=127.0.0.1
OIDC_PROVIDERS=(idporten helseid)
OIDC_VAR_DIR="${OIDC_TEST_VAR_DIR:-$REPO_ROOT/var/oidc}"
OIDC_LOG_DIR="$OIDC_VAR_DIR/logs"
OIDC_START_TIMEOUT="${OIDC_TEST_START_TIMEOUT:-30}"
OIDC_STOP_TIMEOUT="${OIDC_TEST_STOP_TIMEOUT:-10}"
OIDC_PROVIDER_JS="$OIDC_SCRIPT_DIR/provider.mjs"
OIDC_PINNED_VERSION=9.13.3
if [[ -z "${NODE:-}" ]]; then
  if [[ -x /usr/bin/node ]]; then NODE=/usr/bin/node; else NODE=node; fi
fi
NPM="${NPM:-npm}"

oidc_die() { echo "oidc: ERROR: $*" >&2; exit 1; }
oidc_log() { echo "oidc: $*" >&2; }

oidc_port() {
  case "$1" in
    idporten) echo "${OIDC_TEST_IDPORTEN_PORT:-19443}" ;;
    helseid) echo "${OIDC_TEST_HELSEID_PORT:-19444}" ;;
    *) oidc_die "unknown provider '$1' (idporten|helseid)" ;;
  esac
}
oidc_issuer() { echo "http://$OIDC_HOST:$(oidc_port "$1")"; }
oidc_pid_file() { echo "$OIDC_VAR_DIR/$1.pid"; }
oidc_keys_file() { echo "$OIDC_VAR_DIR/$1/jwks.json"; }
oidc_log_file() { echo "$OIDC_LOG_DIR/$1.log"; }

# node_modules holds exactly the pinned oidc-provider (else start runs `npm ci`).
oidc_deps_ok() {
  local pj="$OIDC_SCRIPT_DIR/node_modules/oidc-provider/package.json"
  [[ -f "$pj" ]] && grep -q "\"version\": \"$OIDC_PINNED_VERSION\"" "$pj"
}

# Is $2 the pid of *this* repo's provider $1? (guards against stale pid files / pid reuse)
oidc_pid_is_ours() {
  local name=$1 pid=$2 cmd
  [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *" $OIDC_PROVIDER_JS --name $name "* ]]
}

# Print the pid of provider $1 if it runs, else return 1 (pid file, then a /proc scan).
oidc_running_pid() {
  local name=$1 pid="" f
  f="$(oidc_pid_file "$name")"
  [[ -f "$f" ]] && pid="$(tr -dc '0-9' <"$f")"
  if [[ -n "$pid" ]] && oidc_pid_is_ours "$name" "$pid"; then echo "$pid"; return 0; fi
  local d
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    if oidc_pid_is_ours "$name" "$pid"; then echo "$pid"; return 0; fi
  done
  return 1
}

oidc_port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$OIDC_HOST/$1" 2>/dev/null; }

# Does provider $1 serve its discovery document (with the expected issuer)?
oidc_answers() {
  local issuer body
  issuer="$(oidc_issuer "$1")"
  body="$(curl -fsS --max-time 3 --noproxy '*' "$issuer/.well-known/openid-configuration" 2>/dev/null)" || return 1
  [[ "$body" == *"\"issuer\":\"$issuer\""* ]]
}

# SIGTERM, wait up to OIDC_STOP_TIMEOUT, SIGKILL as last resort.
oidc_stop_one() {
  local name=$1 pid
  if ! pid="$(oidc_running_pid "$name")"; then
    rm -f "$(oidc_pid_file "$name")"
    oidc_log "$name: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + OIDC_STOP_TIMEOUT))
  while oidc_pid_is_ours "$name" "$pid"; do
    if (( SECONDS >= deadline )); then
      oidc_log "$name: still running after ${OIDC_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      local kdeadline=$((SECONDS + 10))
      while oidc_pid_is_ours "$name" "$pid"; do
        (( SECONDS < kdeadline )) || oidc_die "$name: pid $pid survived SIGKILL"
        sleep 0.1
      done
      break
    fi
    sleep 0.1
  done
  rm -f "$(oidc_pid_file "$name")"
  oidc_log "$name: stopped (pid $pid)"
}

# Serialise concurrent start/stop calls (bounded wait).
oidc_lock() {
  mkdir -p "$OIDC_VAR_DIR"
  exec 9>"$OIDC_VAR_DIR/.lock"
  flock -w 120 9 || oidc_die "another infra/oidc start/stop holds $OIDC_VAR_DIR/.lock"
}

# If var/ is freshly created inside the repo, make it ignore itself.
oidc_mark_var_ignored() {
  [[ "$OIDC_VAR_DIR" == "$REPO_ROOT/var/"* ]] || return 0
  mkdir -p "$REPO_ROOT/var"
  [[ -e "$REPO_ROOT/var/.gitignore" ]] \
    || printf '# generated by infra/ scripts: everything here is local state\n*\n' >"$REPO_ROOT/var/.gitignore"
}

# Which providers a command is about: its arguments, or both.
oidc_selected() {
  local n
  if (( $# == 0 )); then printf '%s\n' "${OIDC_PROVIDERS[@]}"; return 0; fi
  for n in "$@"; do oidc_port "$n" >/dev/null; echo "$n"; done
}
