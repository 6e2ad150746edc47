#!/usr/bin/env bash
# Install what the serving browser test needs: Debian's chromium and playwright-python (its driver ships in the
# wheel). We never run `playwright install`: the test points playwright at /usr/bin/chromium.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
PY="${PYTHON:-python}"
"$PY" -m pip install -q "playwright==1.65.2"
