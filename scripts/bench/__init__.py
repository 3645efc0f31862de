"""Shared parts of the benchmark scripts in ``scripts/``.

- `bench.harness`: the backend (sync, compilation, peak memory: the one place
  that dispatches on ``KERAS_BACKEND``) and the timing (interleaved rounds,
  paired ratios, medians);
- `bench.report`: markdown tables and the JSON file.

The command lines are ``scripts/benchmark.py`` (one layer) and
``scripts/benchmark_networks.py`` (whole networks).
"""
