#!/usr/bin/env bash
# Build the one-file executable dist/tqd with PyInstaller.
#
#   packaging/build.sh [--dist DIR] [--work DIR]
#
# PYTHON selects the interpreter (default: .venv/bin/python, then python3); it
# needs tqd's dependencies and PyInstaller (pip install -e '.[build]'). The
# commit baked into the binary comes from git, or from TQD_BUILD_COMMIT when
# building outside a checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="$root/dist"
work="$root/build/pyinstaller"
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) dist="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    *) echo "build.sh: unknown argument $1 (use --dist DIR, --work DIR)" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
if ! "$python" -c 'import PyInstaller' 2>/dev/null; then
  echo "build.sh: PyInstaller is not installed for $python (pip install -e '.[build]')" >&2
  exit 2
fi
start=$(date +%s)
"$python" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "$work" "$root/packaging/tqd.spec"
echo "built $dist/tqd ($(du -m "$dist/tqd" | cut -f1) MB) in $(( $(date +%s) - start ))s"
"$dist/tqd" version
