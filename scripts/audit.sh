#!/usr/bin/env bash
# Dependency audit (CI): pip-audit of the installed environment against the PyPI advisory
# database. Found vulnerabilities fail (their list is printed); a missing network or a timeout
# (60 s) prints "audit not run: <reason>" and does not fail, so CI runs offline too.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(timeout 60 .venv/bin/python -m pip_audit --skip-editable --progress-spinner off 2>&1)
status=$?
if [ $status -eq 0 ]; then
    echo "audit: no known vulnerabilities"
elif grep -qi "vulnerab" <<<"$out" && ! grep -qiE "connection|resolve|timed out|network|max retries" <<<"$out"; then
    echo "audit: vulnerable packages found:"; echo "$out"; exit 1
else
    echo "audit not run: $( [ $status -eq 124 ] && echo 'timed out after 60 s' || grep -m1 -iE 'error|connection' <<<"$out" || echo "pip-audit exit $status")"
fi
