#!/usr/bin/env bash
# Set everything up, generate a synthetic CT perfusion study with known truth, analyse it, show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
case="${1:-mismatch}"
rm -rf "demo/$case"
.venv/bin/python -m sample_data --case "$case" --out "demo/$case"
.venv/bin/triage analyze "demo/$case/dicom" --out "demo/$case/result"
echo
echo "Truth of the phantom (demo/$case/truth.json):"
.venv/bin/python - "$case" <<'PY'
import json, sys
truth = json.load(open(f"demo/{sys.argv[1]}/truth.json"))["volumes"]
print("  " + "   ".join(f"{k} {v if v is None else round(v, 1)}" for k, v in truth.items()))
PY
echo "Pictures: demo/$case/result/summary.png and demo/$case/result/images/*.png"
