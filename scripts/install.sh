# Source this: create .venv if needed and install Argos with the given extras.
# Usage: source scripts/install.sh [EXTRAS]   (EXTRAS: training, dev)
set -euo pipefail
python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null || python_bin=python3
[ -d .venv ] || "$python_bin" -m venv .venv
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[${1:-training}]"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
