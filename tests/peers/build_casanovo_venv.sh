#!/usr/bin/env bash
# Casanovo 5.2.1 in a virtual environment of its own (DESIGN section 6), the oracle that
# tests/test_casanovo_oracle.py checks model.metrics against. Installed from the package registry:
# torch 2.13.0 first (the CPU build on disk; otherwise casanovo's range pulls CUDA), then casanovo,
# then pyarrow below 20 (casanovo pins numpy below 2, which newer pyarrow wheels refuse).
#
#     bash tests/peers/build_casanovo_venv.sh        # prints the venv's python
#
# The venv is cached at $CASANOVO_VENV (default ~/.cache/curriculum-search/casanovo-venv): a run that
# finds casanovo 5.2.1 there reuses it in a second. A lock keeps two builds from racing.
set -euo pipefail
VENV="${CASANOVO_VENV:-$HOME/.cache/curriculum-search/casanovo-venv}"
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
ready() {  # a build that finished (a killed one leaves no .complete) and still imports casanovo 5.2.1
    [ -f "$VENV/.complete" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('casanovo') != '5.2.1')" \
        2>/dev/null
}
if ! ready; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    log="$VENV/build.log"  # pip's chatter; its tail is shown if a step fails
    for requirement in torch==2.13.0 casanovo==5.2.1 "pyarrow<20"; do
        "$VENV/bin/python" -m pip install --disable-pip-version-check "$requirement" >>"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            echo "error: $VENV: pip install $requirement failed (log: $log)" >&2
            exit 1
        }
    done
    touch "$VENV/.complete"
    ready || { echo "error: $VENV: casanovo 5.2.1 did not install (log: $log)" >&2; exit 1; }
fi
echo "$VENV/bin/python"
