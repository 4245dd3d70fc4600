#!/usr/bin/env bash
# flagd conformance: the OpenFeature flagd testbed's gherkin scenarios run by the
# unmodified Python flagd provider's own pytest-bdd e2e steps (tests/e2e of the
# openfeature-provider-flagd 0.6.1 sdist) against Switchyard instead of flagd, in
# RPC mode and in in-process mode (flagd.sync.v1); its evaluation features through
# the Python OFREP provider (ofrep/); then all of it through the JavaScript flagd
# (RPC, in-process) and OFREP providers (step 5).
#
# usage: tests/conformance/run.sh [--collect-only] [--testbed-git GITDIR] [BINARY] [-- PYTEST_ARGS...]
#   BINARY         the switchyard binary (default: target/debug/switchyard)
#   --collect-only list and count the scenarios per mode; needs no binary
#   --testbed-git  take the testbed from a clone of open-feature/flagd-testbed at
#                  the pinned commit instead of the copy in testbed/
# env: CONF_MODES ("rpc in-process ofrep"), CONF_JS_MODES (the same), CONF_VENV (/tmp/conf-venv), CONF_WORK
#      (/tmp/conf-run), CONF_CACHE (/tmp/conf-cache), CONF_PORT (18013),
#      CONF_LAUNCHPAD_PORT (18080), CONF_FORBIDDEN_PORT (19212), CONF_INTERNAL_PORT (18113)
#
# Needs the network only for PyPI (the venv and the sdist). Prints a
# per-feature table; exits non-zero when any scenario fails.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1  # nothing written under tests/conformance

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROVIDER=openfeature-provider-flagd
PROVIDER_VERSION=0.6.1
SDIST=openfeature_provider_flagd-$PROVIDER_VERSION.tar.gz
SDIST_SHA256=f6a3f9b9873923f0ba8cae10248f3503e1f6929b5b60909f54677cdb8868f4b8
TESTBED_COMMIT=$(sed -n 's/^commit=//p' "$HERE/testbed/PIN")
TESTBED_VERSION=3.8.0

VENV=${CONF_VENV:-/tmp/conf-venv}
WORK=$(realpath -m "${CONF_WORK:-/tmp/conf-run}")
CACHE=${CONF_CACHE:-/tmp/conf-cache}
MODES=${CONF_MODES:-rpc in-process ofrep}

collect=""; testbed_git=""; binary="$ROOT/target/debug/switchyard"; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --collect-only) collect=1 ;;
    --testbed-git) testbed_git=$2; shift ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) binary=$1 ;;
  esac
  shift
done
if [ -z "$collect" ]; then
  [ -x "$binary" ] || { echo "run.sh: no switchyard binary at $binary (cargo build first)" >&2; exit 2; }
  binary=$(realpath "$binary")
fi

# 1. The venv, rebuilt when the pins change.
stamp=$(cat "$HERE/requirements.txt" "$ROOT/tests/openfeature/requirements.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.conf-stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
  echo "$stamp" > "$VENV/.conf-stamp"
fi

# 2. The provider's sdist (its tests/ are not in the wheel), checked by hash.
# --no-binary for the provider alone: its build backend's own deps may be wheels.
mkdir -p "$CACHE"
if ! echo "$SDIST_SHA256  $CACHE/$SDIST" | sha256sum -c --quiet >/dev/null 2>&1; then
  "$VENV/bin/pip" download -q --no-deps --no-binary "$PROVIDER" -d "$CACHE" "$PROVIDER==$PROVIDER_VERSION"
  echo "$SDIST_SHA256  $CACHE/$SDIST" | sha256sum -c --quiet
fi

# 3. The run tree, laid out as in the provider's repository: its tests/ and
# pytest.ini, the testbed as its openfeature/test-harness submodule.
rm -rf "$WORK"
mkdir -p "$WORK/openfeature/test-harness/ssl"
tar xzf "$CACHE/$SDIST" -C "$WORK" --strip-components=1 \
  "openfeature_provider_flagd-$PROVIDER_VERSION/tests" "openfeature_provider_flagd-$PROVIDER_VERSION/pytest.ini"
# The one file replaced: docker compose -> launchpad.py with Switchyard.
cp "$HERE/flagd_container.py" "$WORK/tests/e2e/flagd_container.py"
# One package added: the OFREP mode (the Python OFREP provider; ofrep/conftest.py).
cp -r "$HERE/ofrep" "$WORK/tests/e2e/ofrep"
HARNESS=$WORK/openfeature/test-harness
if [ -n "$testbed_git" ]; then
  git --git-dir="$testbed_git" archive "$TESTBED_COMMIT" gherkin flags launchpad/configs version.txt | tar x -C "$HARNESS"
else
  cp -r "$HERE/testbed/gherkin" "$HERE/testbed/flags" "$HERE/testbed/launchpad" "$HERE/testbed/version.txt" "$HARNESS/"
fi
[ "$(cat "$HARNESS/version.txt")" = "$TESTBED_VERSION" ] || { echo "run.sh: testbed is not v$TESTBED_VERSION" >&2; exit 2; }

# The `ssl` provider trusts test-harness/ssl/custom-root-cert.crt: a CA made
# for this run (the testbed's own CA key stays out of this repository), which
# signs the certificate launchpad.py's TLS terminator serves for localhost.
(
  cd "$WORK/openfeature/test-harness/ssl"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=conformance-ca \
    -keyout ca.key -out custom-root-cert.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
  openssl x509 -req -in server.csr -CA custom-root-cert.crt -CAkey ca.key -CAcreateserial \
    -days 2 -sha256 -extfile san.ext -out server.crt 2>/dev/null
)

export CONF_SWITCHYARD=$binary CONF_TESTBED=$HARNESS CONF_LAUNCHPAD=$HERE/launchpad.py
export CONF_TLS_CERT=$HARNESS/ssl/server.crt CONF_TLS_KEY=$HARNESS/ssl/server.key
export CONF_PORT=${CONF_PORT:-18013} CONF_LAUNCHPAD_PORT=${CONF_LAUNCHPAD_PORT:-18080}
export CONF_FORBIDDEN_PORT=${CONF_FORBIDDEN_PORT:-19212} CONF_INTERNAL_PORT=${CONF_INTERNAL_PORT:-18113}
# The provider reads FLAGD_* for its defaults: none may leak in from the caller.
for v in $(env | sed -n 's/^\(FLAGD_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

# 4. pytest per mode, in the provider's own package for that mode (its
# conftest there deselects by tag), with our plugin counting by feature.
declare -A dirs=([rpc]=rpc [in-process]=inprocess [ofrep]=ofrep)
# OFREP providers send tenant testbed's token (launchpad.py configures it).
export CONF_TENANT_TOKEN=conf-testbed-$(openssl rand -hex 12)
status=0; reports=()
cd "$WORK"
for mode in $MODES; do
  mkdir -p "$WORK/$mode"
  report=$WORK/report-$mode.json; reports+=("$mode=$report")
  echo "== $mode"
  args=(-p conformance_report -p no:cacheprovider -q -rN)
  # Provider 0.6.1 changed two defaults (retryBackoffMaxMs 12000 -> 5000,
  # retryGracePeriod 5 -> 10) that testbed v3.8.0's config.feature still
  # expects: a provider/testbed mismatch that no server can pass or fail.
  t=tests/e2e/${dirs[$mode]}/test_flaqd.py::test_default_config
  args+=(--deselect "$t[retryBackoffMaxMs-Integer-12000]" --deselect "$t[retryGracePeriod-Integer-5]")
  # Switchyard's documented differences from flagd (left-out.txt): left out,
  # so that any other failure fails the run.
  while read -r m id _; do
    case "$m" in ''|'#'*) continue ;; esac
    if [ "$m" = all ] || [ "$m" = "$mode" ] || { [ "$m" = both ] && [ "$mode" != ofrep ]; }; then
      args+=(--deselect "tests/e2e/${dirs[$mode]}/test_flaqd.py::$id")
    fi
  done < "$HERE/left-out.txt"
  [ -n "$collect" ] && args+=(--collect-only)
  CONF_WORKDIR=$WORK/$mode CONF_REPORT=$report PYTHONPATH=$HERE \
    timeout 2400 "$VENV/bin/python" -m pytest "tests/e2e/${dirs[$mode]}" "${args[@]}" "${extra[@]}" \
    > "$WORK/pytest-$mode.log" 2>&1 || status=$?
  tail -n 1 "$WORK/pytest-$mode.log"
  # Flags the import refused (launchpad.py imported the rest): say so here.
  grep -o 'DROPPED flag [^:]*: .*' "$WORK/$mode/launchpad.log" 2>/dev/null | sort -u | sed 's/^/  /' || true
  # Left only when pytest was cut short: launchpad, then the server it ran.
  for pidfile in "$WORK/$mode/launchpad.pid" "$WORK/$mode/server.pid"; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; sleep 1; fi
  done
done

# 5. The same gherkin through OpenFeature's JavaScript SDK and its providers
# from npm (tests/openfeature-js: @openfeature/flagd-provider in RPC and
# in-process mode, @openfeature/ofrep-provider), with our step definitions
# (tests/openfeature-js/conformance/steps.mjs; the provider's own are not in
# its npm package). The tags are the JS provider's own selection for each mode
# (its e2e specs); OFREP runs the evaluation features (no connection, events or
# sync: OFREP has none). config.feature checks a provider's option parsing and
# never reaches a server: left out.
JS=$ROOT/tests/openfeature-js
JS_MODES=${CONF_JS_MODES:-rpc in-process ofrep}
declare -A js_tags=(
  [rpc]='@rpc and not @targetURI and not @caching and not @unixsocket and not @deprecated and not @fractional-v1'
  [in-process]='@in-process and not @targetURI and not @sync and not @unixsocket and not @deprecated and not @fractional-v1'
  [ofrep]='not @grace and not @caching and not @deprecated and not @fractional-v1 and not @metadata-provider'
)
declare -A js_features=(
  [rpc]='*.feature' [in-process]='*.feature'
  [ofrep]='evaluation.feature targeting.feature disabled.feature contextEnrichment.feature metadata.feature'
)
if [ -n "$JS_MODES" ] && [ -z "$collect" ]; then
  [ -x "$JS/node_modules/.bin/cucumber-js" ] || { echo "run.sh: npm ci --prefix tests/openfeature-js first" >&2; exit 2; }
fi
for mode in $JS_MODES; do
  [ -n "$collect" ] && break
  mkdir -p "$WORK/js-$mode"
  features=()
  for f in ${js_features[$mode]}; do
    for g in "$HARNESS"/gherkin/$f; do [ "$(basename "$g")" = config.feature ] || features+=("$g"); done
  done
  echo "== js $mode"
  # steps.mjs writes the report (records as conformance_report.py's) and
  # skips what left-out-js.txt names for this mode, recorded as deselected.
  report=$WORK/report-js-$mode.json; reports+=("js-$mode=$report")
  CONF_JS_MODE=$mode CONF_PYTHON=$VENV/bin/python CONF_HARNESS=$HARNESS CONF_WORKDIR=$WORK/js-$mode \
    CONF_REPORT=$report CONF_LEFT_OUT=$HERE/left-out-js.txt \
    timeout 2400 "$JS/node_modules/.bin/cucumber-js" "${features[@]}" \
      --import "$JS/conformance/steps.mjs" --tags "(${js_tags[$mode]})" --format summary --force-exit \
    > "$WORK/cucumber-js-$mode.log" 2>&1 || status=$?
  tail -n 3 "$WORK/cucumber-js-$mode.log"
  for pidfile in "$WORK/js-$mode/launchpad.pid" "$WORK/js-$mode/server.pid"; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; sleep 1; fi
  done
done

# 6. The table; logs stay in $WORK (pytest-MODE.log, cucumber-js-MODE.log,
# [js-]MODE/launchpad.log, [js-]MODE/switchyard.log).
echo
"$VENV/bin/python" "$HERE/summary.py" "${reports[@]}" --list-failures || status=1
exit "$status"
