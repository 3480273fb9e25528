#!/usr/bin/env bash
# Rewrite constraints.txt from the working .venv (run after upgrading and a green make test).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Versions tested together; set-up installs with -c constraints.txt. Regenerate with"
  echo "# tools/freeze_constraints.sh after upgrading and re-running make test."
  .venv/bin/python -m pip freeze --exclude-editable | grep -v '^spark-launcher' | sort -f
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
