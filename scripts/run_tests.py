"""Runs the test suite once per Keras backend; exits non-zero if any run fails.

Usage: python scripts/run_tests.py [--backend tensorflow jax torch] [pytest args]
"""

import argparse
import os
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=BACKENDS)
    args, pytest_args = parser.parse_known_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results, seconds = {}, {}
    for backend in args.backend:
        print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
        env = {**os.environ, "KERAS_BACKEND": backend}
        start = time.monotonic()
        # Exit code 5 (no test collected) counts as a failure too.
        results[backend] = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", *pytest_args], cwd=root, env=env
        )
        seconds[backend] = time.monotonic() - start
    # Per-backend wall time, so that CI's budget is watched as the suite grows.
    print("\n===== summary =====")
    for backend, code in results.items():
        status = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"{backend}: {status} in {seconds[backend]:.0f} s")
    sys.exit(0 if all(code == 0 for code in results.values()) else 1)


if __name__ == "__main__":
    main()
