# Source this: create .venv if needed and install Argos with the given extras.
# Usage: source scripts/install.sh [EXTRAS]   (EXTRAS: training, loadtest, dev)
# pip runs only when pyproject.toml, the extras or the checkout changed since the last
# install into this .venv, and one install at a time: commands started together (two
# `scripts/serve`, say) wait for each other instead of failing inside pip.
set -euo pipefail
python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null || python_bin=python3
extras=${1:-training}
mkdir -p .cache
(
    if command -v flock >/dev/null; then flock 9; fi
    [ -d .venv ] || "$python_bin" -m venv .venv
    stamp=.venv/.argos-installed-$extras
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".[$extras]"
        echo "$wanted" >"$stamp"
    fi
) 9>.cache/install.lock
source .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
