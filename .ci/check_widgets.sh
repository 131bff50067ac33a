#!/usr/bin/env bash
# lyaplib.widgets under both ipywidgets majors that lyaplib accepts (>=7.7,<9): 8, which
# the book's venv has, and 7.7.1, which Colab ships (it does not support 8). 7.7.1 is
# installed into a folder put first on PYTHONPATH, so the rest of the venv is shared.
# Usage: .ci/check_widgets.sh VENV_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: $0 VENV_BIN}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

major=$("$bin/python" -c "import ipywidgets; print(ipywidgets.__version__.split('.')[0])")
echo "== lyaplib.widgets with the venv's ipywidgets $major"
LYAPLIB_IPYWIDGETS_MAJOR=$major "$bin/python" -m pytest -q -p no:cacheprovider tests/test_widgets.py

echo "== lyaplib.widgets with ipywidgets 7.7.1 (Colab's)"
"$bin/python" -m pip install -q --target "$tmp/ipywidgets7" --no-deps ipywidgets==7.7.1 \
  ipython_genutils==0.2.0 widgetsnbextension==3.6.10 jupyterlab_widgets==1.1.11 \
  >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; exit 1; }
PYTHONPATH="$tmp/ipywidgets7" LYAPLIB_IPYWIDGETS_MAJOR=7 \
  "$bin/python" -m pytest -q -p no:cacheprovider -W "ignore::DeprecationWarning" tests/test_widgets.py
