# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings/helpers for infra/fhir/{build,validate}. Sourced, not run.
#
# Environment overrides:
#   FHIR_M2_REPO   Maven local repo for the fetch (default: $KAFKA_M2_REPO when set, so
#                  scripts/test's shared ~/.m2/repository serves both; else <repo>/var/fhir/m2)
#   FHIR_JAVA_OPTS JVM options for Validate     (default -Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1)
#   JAVA           java binary                  (default: java on PATH)
#   MVN            mvn binary                   (default: mvn on PATH)

FHIR_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$FHIR_SCRIPT_DIR/../.." && pwd)"

FHIR_POM="$FHIR_SCRIPT_DIR/pom.xml"
# Maven's own output folder (infra/fhir/.gitignore ignores it).
FHIR_TARGET="$FHIR_SCRIPT_DIR/target"
FHIR_CLASSES="$FHIR_TARGET/classes"
FHIR_CLASSPATH_FILE="$FHIR_TARGET/classpath.txt"
FHIR_STAMP="$FHIR_TARGET/.built-from.sha256"
FHIR_BUILD_LOG="$FHIR_TARGET/mvn-build.log"
FHIR_M2_REPO="${FHIR_M2_REPO:-${KAFKA_M2_REPO:-$REPO_ROOT/var/fhir/m2}}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"

fhir_die() { echo "fhir: ERROR: $*" >&2; exit 1; }
fhir_log() { echo "fhir: $*" >&2; }

# Everything the build output depends on: the pom and every source/resource file (names and
# contents), so editing Validate.java or the pom triggers a rebuild and nothing else does.
fhir_inputs_hash() {
  (cd "$FHIR_SCRIPT_DIR" && { echo pom.xml; find src -type f | LC_ALL=C sort; } \
    | while IFS= read -r f; do printf '%s  ' "$f"; sha256sum <"$f" | cut -c1-64; done) \
    | sha256sum | cut -c1-64
}

# The build is complete when it was made from the current inputs (stamp written last) and
# every jar of its classpath is still there (the Maven repo it points into may have been wiped).
fhir_built_ok() {
  [[ -f "$FHIR_STAMP" ]] && [[ "$(cat "$FHIR_STAMP")" == "$(fhir_inputs_hash)" ]] \
    && [[ -f "$FHIR_CLASSES/careplan/fhir/Validate.class" ]] && [[ -s "$FHIR_CLASSPATH_FILE" ]] || return 1
  local -a jars; local jar
  IFS=: read -r -a jars <"$FHIR_CLASSPATH_FILE"
  for jar in "${jars[@]}"; do [[ -f "$jar" ]] || return 1; done
}
