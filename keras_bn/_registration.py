"""keras_bn's serializable classes, registered with Keras when Keras loads.

``import keras_bn`` does not import Keras (it takes seconds, with its
backend), yet a ``.keras`` file naming ``keras_bn>BatchNormalization`` must
load after it. So the modules that register classes are imported as soon as
Keras itself is: at once when it already is, else right after its own
import, by a finder that steps aside for every other module and removes
itself once used.
"""

import importlib
import importlib.abc
import importlib.util
import sys

# The modules whose import registers a class or function with
# keras.saving.register_keras_serializable.
REGISTERING_MODULES = (
    "keras_bn.batch_normalization",
    "keras_bn.legacy.activations",
)


def register():
    for name in REGISTERING_MODULES:
        importlib.import_module(name)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``keras`` is about to be imported, it
    wraps the real loader so that `register` runs once Keras has loaded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def load_then_register(module):
            load(module)
            register()

        spec.loader.exec_module = load_then_register
        return spec


def register_when_keras_loads():
    if "keras" in sys.modules:
        # A failed registration (no backend) surfaces where the layer is
        # used, with the advice keras_bn.__getattr__ gives.
        try:
            register()
        except ModuleNotFoundError:
            pass
        return
    if not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())
