"""Runs the fast test suite at the lowest versions pyproject.toml declares.

The floors are read from pyproject.toml itself (``requires-python``, the
``>=`` bounds of keras, numpy and h5py, and of jax in the ``jax`` extra), so
that a declared floor is always the one tested: a fresh virtual environment
on that Python (found on PATH as ``python3.10`` or under pyenv), the package
installed with its own ``pip install`` and those exact versions, then
``pytest -m "not slow"`` on the JAX backend. Exits non-zero if any step
fails.

Usage: python scripts/run_floor_tests.py [--venv DIR] [pytest args]
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def declared_floors():
    """``{"python": "3.10", "keras": "3.10", ...}`` from pyproject.toml (read
    as text: tomllib is Python 3.11's, and this runs on the floor's too)."""
    with open(os.path.join(ROOT, "pyproject.toml")) as file:
        text = file.read()
    floors = {"python": re.search(r'requires-python = ">=([0-9.]+)"', text)[1]}
    for name in ("keras", "numpy", "h5py", "jax"):
        match = re.search(rf'"{name}>=([0-9.]+)', text)
        if match is None:
            raise SystemExit(f"pyproject.toml declares no floor for {name}")
        floors[name] = match[1]
    return floors


def find_python(version):
    """An interpreter of ``version`` (e.g. "3.10"): pyenv's, else on PATH."""
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python"))
    candidates.append(shutil.which(f"python{version}"))
    for candidate in candidates:
        # A pyenv shim runs only the versions pyenv has selected.
        if candidate and os.path.exists(candidate) and "/shims/" not in candidate:
            return candidate
    raise SystemExit(
        f"No Python {version} found (python{version} on PATH, or pyenv's): "
        "the declared floor cannot be tested."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=os.path.join(ROOT, ".ci-floor-venv"))
    args, pytest_args = parser.parse_known_args()
    floors = declared_floors()
    print("declared floors:", ", ".join(f"{k} {v}" for k, v in floors.items()))
    python = find_python(floors["python"])
    start = time.monotonic()
    shutil.rmtree(args.venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", args.venv], check=True)
    venv_python = os.path.join(args.venv, "bin", "python")
    pins = [f"{name}=={floors[name]}" for name in ("keras", "numpy", "h5py", "jax")] + [
        f"jaxlib=={floors['jax']}",
        "pytest>=8",
    ]
    subprocess.run(
        [venv_python, "-m", "pip", "install", "--quiet", "-e", ROOT, *pins],
        check=True,
    )
    installed = subprocess.run(
        [venv_python, "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout
    wanted = ("keras==", "numpy==", "h5py==", "jax==", "jaxlib==")
    pinned = [line for line in installed.split() if line.startswith(wanted)]
    print("installed:", " ".join(pinned))
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    code = subprocess.call(
        [venv_python, "-m", "pytest", "-q", "-m", "not slow", *pytest_args],
        cwd=ROOT,
        env=env,
    )
    status = "passed" if code == 0 else f"FAILED (exit {code})"
    print(
        f"\nfloor (Python {floors['python']}, jax): {status} in "
        f"{time.monotonic() - start:.0f} s"
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
