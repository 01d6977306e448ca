"""Execute lesson notebooks top to bottom (used by CI in quick mode: ``TINYSR_QUICK=1``).

    python lessons/run.py lessons/*.ipynb            # execute, report time per lesson
    python lessons/run.py --write lessons/01_*.ipynb # also save the outputs into the notebook

A lesson fails the run if any cell raises.  Notebooks run with the lessons folder as working directory.
"""
import argparse
import sys
import time
from pathlib import Path


def main(argv=None):
    import nbformat
    from nbclient import NotebookClient

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--write", action="store_true", help="save executed outputs back into the notebooks")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = ap.parse_args(argv)
    failed = []
    for path in map(Path, args.notebooks):
        nb = nbformat.read(path, as_version=4)
        t0 = time.time()
        try:
            NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as e:
            failed.append(path.name)
            print(f"FAILED {path.name} after {time.time() - t0:.0f} s: {e}", file=sys.stderr)
            continue
        print(f"ok     {path.name}  {time.time() - t0:.0f} s")
        if args.write:
            nbformat.write(nb, path)
    if failed:
        print(f"{len(failed)} lesson(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
