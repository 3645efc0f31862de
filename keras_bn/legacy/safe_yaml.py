"""Reading the YAML that Keras 0.x to 2.x ``to_yaml()`` wrote, safely.

Every release tagged tuples ``!!python/tuple``, and Keras 1.2.x wrote some
integers as pickled NumPy scalars
(``!!python/object/apply:numpy.core.multiarray.scalar`` of a
``numpy.dtype`` and the value's bytes). This loader builds on PyYAML's
`yaml.SafeLoader`: it constructs tuples, decodes only that one NumPy scalar
form (a numeric dtype and exactly its number of bytes, without pickle), and
refuses every other Python tag: nothing in the file can run code.
"""

import numpy as np

from keras_bn.legacy.errors import LegacyFileError

__all__ = ["load_yaml"]

_SCALAR = "tag:yaml.org,2002:python/object/apply:numpy.core.multiarray.scalar"
_DTYPE = "tag:yaml.org,2002:python/object/apply:numpy.dtype"
_NUMERIC_KINDS = "biuf"


class _Refused(Exception):
    pass


def _loader_class():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tuple_(loader, node):
        return tuple(loader.construct_sequence(node, deep=True))

    def dtype(loader, node):
        mapping = loader.construct_mapping(node, deep=True)
        args, state = mapping.get("args"), mapping.get("state")
        if not (isinstance(args, list) and args and isinstance(args[0], str)):
            raise _Refused(f"a numpy.dtype with args {args!r}")
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        try:
            value = np.dtype(args[0]).newbyteorder(order if order in "<>" else "=")
        except (TypeError, ValueError) as error:
            raise _Refused(f"a numpy.dtype {args[0]!r}: {error}") from None
        if value.kind not in _NUMERIC_KINDS:
            raise _Refused(f"a numpy.dtype of kind {value.kind!r}")
        return value

    def scalar(loader, node):
        items = loader.construct_sequence(node, deep=True)
        if len(items) != 2 or not isinstance(items[0], np.dtype):
            raise _Refused("a numpy scalar not of the form [dtype, bytes]")
        kind, raw = items
        if not isinstance(raw, bytes) or len(raw) != kind.itemsize:
            raise _Refused(f"a numpy scalar of {kind} without {kind.itemsize} bytes")
        return np.frombuffer(raw, dtype=kind)[0].item()

    def refuse(loader, suffix, node):
        raise _Refused(f"the tag !!python/{suffix}")

    Loader.add_constructor("tag:yaml.org,2002:python/tuple", tuple_)
    Loader.add_constructor(_DTYPE, dtype)
    Loader.add_constructor(_SCALAR, scalar)
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    return Loader


# An alias repeats what it names without a copy, but whatever walks the
# result (a message, a config walk) meets every repetition: the document
# expanded may hold at most this many nodes per character of text, and never
# more than _MOST_NODES.
_NODES_PER_CHARACTER = 8
_MOST_NODES = 10**6


def _check_expansion(root, length, path):
    """Refuses a document whose aliases expand past the bound (counted on
    the node graph, each node once: linear in the text)."""
    if root is None:
        return
    bound = min(_MOST_NODES, _NODES_PER_CHARACTER * max(length, 1))
    sizes, stack = {}, [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = []
        if isinstance(node.value, list):
            for item in node.value:
                children += list(item) if isinstance(item, tuple) else [item]
        if not children_done:
            stack.append((node, True))
            stack += [(child, False) for child in children if id(child) not in sizes]
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 0) for child in children)
        if sizes[id(node)] > bound:
            raise LegacyFileError(
                f"the YAML's aliases expand to more than {bound} nodes (a "
                f"document of {length} characters): refused.",
                path=path,
            )


def load_yaml(text, path=None):
    """The YAML document ``text`` as Python values (tuples for
    ``!!python/tuple``, ints and floats for Keras 1.2's NumPy scalars).

    Raises:
        LegacyFileError: PyYAML is missing, the text is not YAML, or it
            holds a tag other than those above.
    """
    try:
        import yaml
    except ImportError:
        raise LegacyFileError(
            "reading a YAML architecture needs PyYAML: pip install pyyaml.",
            path=path,
        ) from None
    try:
        loader = _loader_class()(text)
        try:
            node = loader.get_single_node()
            _check_expansion(node, len(text), path)
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except LegacyFileError:
        raise
    except _Refused as error:
        raise LegacyFileError(
            f"the YAML holds {error}; only !!python/tuple and Keras 1.2's "
            "numeric NumPy scalars are read (nothing that would run code).",
            path=path,
        ) from None
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        message = " ".join(str(error).split())
        raise LegacyFileError(f"not valid YAML: {message}", path=path) from None
