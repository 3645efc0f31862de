"""Keeps TensorFlow's native start-up log out of the demo's and the
notebooks' output.

TensorFlow's C++ libraries log their start-up (no CUDA driver, a failed
``cuInit`` on a machine without a GPU, the CPU instructions the build does
not use) straight to file descriptor 2, before absl's logging is set up:
``TF_CPP_MIN_LOG_LEVEL`` does not silence it, and ``sys.stderr`` never sees
it, so in Jupyter it lands in the first cell's output. `quiet_native_log`
sends file descriptor 2 to a temporary file while Keras (and so TensorFlow)
is imported, then shows what it caught unless it is that chatter::

    from native_log import quiet_native_log

    with quiet_native_log():
        import keras

This lives beside ``scripts/demo.py``, not in the keras_bn package: a
library has no business redirecting its host process's file descriptors.
"""

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["is_start_up_chatter", "quiet_native_log"]

STDERR_FD = 2
# absl's format (TensorFlow 2.16 on): I0000 00:00:1796498662.413044  886
# cudart_stub.cc:31] message.
ABSL_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] (.*)")
# TensorFlow 2.15 and before: 2024-01-31 12:00:00.000000: I
# tensorflow/core/util/port.cc:113] message.
OLD_TF_LINE = re.compile(r"\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) \S+:\d+\] (.*)")
# Errors that only say no GPU will be used, or that a CUDA library was
# registered twice by TensorFlow's own plugins; any other error is shown.
START_UP_ERROR = re.compile(
    r"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory"
)
OTHER_CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    # The second line of cpu_feature_guard's message.
    r"|To enable the following instructions: "
    r"|\s*$"
)


def is_start_up_chatter(line):
    """True for a line of the native libraries' start-up log that says
    nothing the user must act on: its info and warnings, the known no-GPU
    errors and the lines around them. Other errors, fatal messages and
    anything not in the native log's format (a Python traceback, a warning
    from Python) are not chatter."""
    match = ABSL_LINE.match(line) or OLD_TF_LINE.match(line)
    if match:
        severity, message = match.groups()
        return severity in "IW" or (
            severity == "E" and START_UP_ERROR.search(message) is not None
        )
    return OTHER_CHATTER.match(line) is not None


@contextlib.contextmanager
def quiet_native_log():
    """Redirects file descriptor 2 to a temporary file for the block.

    Afterwards the descriptor is restored and the caught text is written to
    ``sys.stderr``: all of it if the block raised (the native log then says
    why an import failed), else its lines that are not `is_start_up_chatter`.
    With TensorFlow as Keras' backend, its devices are listed before the
    descriptor is restored, since that, not the import, is when it logs a
    failed ``cuInit`` (and listing them leaves every device setting open).
    """
    sys.stderr.flush()
    try:
        saved = os.dup(STDERR_FD)
    except OSError:
        # No descriptor 2 (a process started without one): nothing to hide.
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), STDERR_FD)
        failed = True
        try:
            yield
            _list_tensorflow_devices()
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, STDERR_FD)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode(errors="replace")
            if not failed:
                text = "".join(
                    line
                    for line in text.splitlines(keepends=True)
                    if not is_start_up_chatter(line)
                )
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


def _list_tensorflow_devices():
    keras = sys.modules.get("keras")
    tensorflow = sys.modules.get("tensorflow")
    if keras is not None and tensorflow is not None:
        if keras.backend.backend() == "tensorflow":
            tensorflow.config.list_physical_devices()
