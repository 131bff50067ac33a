"""Execute one notebook in a fresh kernel and write it with its outputs, failing on the
first cell that raises (what tools/gpu_check.sh uses; nbclient comes with Jupyter).

    python tools/run_notebook.py chapters/03_rnn_dynamics.ipynb OUT_DIR [--timeout 600]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbclient
import nbformat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    notebook = nbformat.read(args.notebook, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(args.notebook.parent)}})
    try:
        client.execute()
    finally:  # the outputs up to a failure are kept, to read what went wrong
        args.out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, args.out_dir / args.notebook.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
