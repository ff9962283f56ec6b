#!/usr/bin/env bash
# Render a report in headless Chromium (Debian's `chromium` package) to a PNG, to look at it.
#   bench/report_screenshot.sh REPORT.html OUT.png [WIDTH] [HEIGHT]
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); width=${3:-1200}; height=${4:-4000}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$width,$height" --screenshot="$out" "file://$report" 2>/dev/null
echo "wrote $out"
