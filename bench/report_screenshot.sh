#!/usr/bin/env bash
# Render a report in headless Chromium (Debian's `chromium` package) to a PNG, to look at it; the
# page's empty bottom is trimmed (Chromium shoots the whole window).
#   bench/report_screenshot.sh REPORT.html OUT.png [WIDTH] [HEIGHT]
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); width=${3:-1200}; height=${4:-6000}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$width,$height" --screenshot="$out" "file://$report" 2>/dev/null
python3 - "$out" <<'PY'
import sys
from PIL import Image, ImageChops
path = sys.argv[1]
image = Image.open(path).convert("RGB")
background = Image.new("RGB", image.size, image.getpixel((0, image.height - 1)))
box = ImageChops.difference(image, background).getbbox()
if box:
    image.crop((0, 0, image.width, min(image.height, box[3] + 24))).save(path, optimize=True)
PY
echo "wrote $out"
