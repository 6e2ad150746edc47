#!/usr/bin/env bash
# Install what the serving browser test needs: Debian's chromium and playwright-python (its driver ships in the
# wheel). We never run `playwright install`: the test points playwright at /usr/bin/chromium.
# `make install` runs this. Usage: install_browser_test.sh [MARKER]. When an install step fails (no registry
# reachable, no root), it writes the reason to MARKER and exits 0, so the rest of `make install` goes on and the
# browser test skips naming that reason; on success MARKER is removed. Without MARKER a failure is an error.
set -uo pipefail
MARKER="${1:-}"
PY="${PYTHON:-python}"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

fail() {
    local why="$1: $(grep -v '^\s*$' "$LOG" | tail -1 | cut -c1-300)"
    if [ -z "$MARKER" ]; then echo "install_browser_test.sh: $why" >&2; exit 1; fi
    printf '%s\n' "$why" >"$MARKER"
    echo "install_browser_test.sh: the browser test will skip: $why" >&2
    exit 0
}

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; else SUDO=; fi
    echo "install_browser_test.sh: installing Debian's chromium (apt-get)"
    $SUDO apt-get update -qq >"$LOG" 2>&1 || fail "apt-get update failed (are Debian's package servers reachable?)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
        >"$LOG" 2>&1 || fail "apt-get install chromium failed"
fi
if ! "$PY" -c "import playwright" >/dev/null 2>&1; then
    "$PY" -m pip install -q "playwright==1.65.2" >"$LOG" 2>&1 || fail "pip install playwright==1.65.2 failed (is PyPI reachable?)"
fi
[ -z "$MARKER" ] || rm -f "$MARKER"
