#!/usr/bin/env bash
# Runs the test suite against the newest releases that pyproject.toml's ranges allow (torch
# excepted: it stays at the CPU build), in a throwaway virtual environment, so that a release
# that breaks neffkit (as ml_dtypes 0.7 did) is seen the day it appears. Prints what changed
# against the lock, then pytest's summary; exits with pytest's status.
#
#   bash tools/test-latest.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH="${NEFFKIT_TORCH:-torch==2.13.0}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade --upgrade-strategy eager "$TORCH" -e '.[test]'
echo "newer than the lock (constraints.txt):"
"$work/venv/bin/pip" freeze --exclude-editable | sed -E 's/\+.*//' | while IFS== read -r name _ version; do
  locked=$(grep -iE "^${name//[-_.]/[-_.]}==" constraints.txt | head -1 | cut -d= -f3)
  if [ "$locked" != "$version" ]; then echo "  $name $version (lock: ${locked:-not pinned})"; fi
done
"$work/venv/bin/python" -m pytest "$@"
