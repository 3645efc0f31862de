"""keras_bn.legacy.safe_yaml: the one NumPy scalar form Keras 1.2's to_yaml()
wrote is decoded exactly (its dtype's byte order, exactly its number of
bytes); every other form, and every other Python tag, is refused."""

import base64

import numpy as np
import pytest

from keras_bn import legacy
from keras_bn.legacy.safe_yaml import load_yaml

pytest.importorskip("yaml", reason="YAML architectures need the yaml extra")


def scalar(code, order, raw):
    """A Keras 1.2 ``to_yaml()`` NumPy scalar: ``dtype(code)`` with byte
    order ``order``, and the value's bytes."""
    encoded = base64.b64encode(raw).decode()
    return f"""value: !!python/object/apply:numpy.core.multiarray.scalar
- !!python/object/apply:numpy.dtype
  args: [{code}, false, true]
  state: !!python/tuple [3, '{order}', null, null, null, -1, -1, 0]
- !!binary |
  {encoded}
"""


@pytest.mark.parametrize(
    "code, order, value",
    [("i8", "<", 6), ("i8", ">", 6), ("i4", ">", -3), ("f8", ">", 0.1),
     ("f4", "<", 2.5), ("u2", ">", 513)],
)  # fmt: skip
def test_a_numpy_scalar_in_its_byte_order(code, order, value):
    raw = np.array(value, dtype=np.dtype(code).newbyteorder(order)).tobytes()
    loaded = load_yaml(scalar(code, order, raw))["value"]
    assert loaded == value
    # A Python number, as JSON (a rebuilt model's config, a .keras file)
    # takes it: a NumPy float32 is not one.
    assert type(loaded) is type(value)


@pytest.mark.parametrize("size", [4, 7, 16])
def test_a_numpy_scalar_of_the_wrong_byte_count_is_refused(size):
    with pytest.raises(legacy.LegacyFileError, match="int64 without 8 bytes"):
        load_yaml(scalar("i8", "<", b"\x01" * size))


@pytest.mark.parametrize("code", ["c16", "S8", "U2", "O", "V8", "M8"])
def test_non_numeric_dtypes_are_refused(code):
    with pytest.raises(legacy.LegacyFileError, match="numpy.dtype"):
        load_yaml(scalar(code, "|", b"\x00" * 8))


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:os.system [echo hi]", "!!python/name:os.system ''",
     "!!python/object:collections.OrderedDict {}"],
)  # fmt: skip
def test_other_python_tags_are_refused(tag):
    with pytest.raises(legacy.LegacyFileError, match="would run code"):
        load_yaml(f"value: {tag}\n")


def test_tuples_are_read():
    assert load_yaml("value: !!python/tuple [1, 2]\n") == {"value": (1, 2)}


@pytest.mark.parametrize(
    "text, message",
    [
        ("value: !!python/object/apply:numpy.dtype {args: [7]}\n",
         "a numpy.dtype with args"),
        ("value: !!python/object/apply:numpy.dtype {args: [nonsense]}\n",
         "a numpy.dtype 'nonsense'"),
        ("value: !!python/object/apply:numpy.core.multiarray.scalar [1, 2, 3]\n",
         "not of the form"),
        ("value: [unclosed\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_malformed_numpy_forms_and_yaml_are_refused(text, message):
    with pytest.raises(legacy.LegacyFileError, match=message):
        load_yaml(text)


def test_without_pyyaml_the_message_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_yaml(name, *args, **kwargs):
        if name == "yaml":
            raise ImportError("No module named 'yaml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yaml)
    with pytest.raises(legacy.LegacyFileError, match="pip install pyyaml"):
        load_yaml("value: 1\n")


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(
    " " * (2 * i) + f"k{i}:\n" for i in range(1, 3000)
)])  # fmt: skip
def test_nesting_deeper_than_python_allows_is_refused(text):
    """PyYAML builds by recursion: a document nested thousands deep is a
    LegacyFileError, not a RecursionError."""
    with pytest.raises(legacy.LegacyFileError):
        load_yaml(text, "deep.yaml")


def test_a_yaml_file_without_a_document_is_no_model(tmp_path):
    """A comment alone is valid YAML holding no document: read as nothing,
    and refused as not a model config (never walked for aliases)."""
    assert load_yaml("# to_yaml() was never called\n") is None
    path = tmp_path / "empty.yaml"
    path.write_text("# to_yaml() was never called\n")
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_model(path, weights=path)
    assert str(caught.value) == (
        f"{path}: expected a model config (a mapping), got NoneType."
    )


def test_a_numpy_bool_scalar_is_a_python_bool():
    """NumPy's bool scalars (dtype b1) are numbers to Keras' configs too."""
    assert load_yaml(scalar("b1", "|", b"\x01"))["value"] is True
    assert load_yaml(scalar("b1", "|", b"\x00"))["value"] is False


@pytest.mark.parametrize(
    "code, kind", [("c16", "c"), ("S8", "S"), ("U2", "U"), ("O", "O"), ("M8", "M")]
)
def test_a_non_numeric_dtype_is_named_by_its_kind(code, kind):
    with pytest.raises(legacy.LegacyFileError) as caught:
        load_yaml(scalar(code, "|", b"\x00" * 8), "m.yaml")
    assert str(caught.value) == (
        f"m.yaml: the YAML holds a numpy.dtype of kind {kind!r}; only "
        "!!python/tuple and Keras 1.2's numeric NumPy scalars are read (nothing "
        "that would run code)."
    )
    assert (caught.value.path, caught.value.layer, caught.value.field) == (
        "m.yaml",
        None,
        None,
    )


@pytest.mark.parametrize(
    "tag, suffix",
    [("!!python/object/apply:os.system [echo hi]", "object/apply:os.system"),
     ("!!python/name:os.system ''", "name:os.system"),
     ("!!python/module:os ''", "module:os")],
)  # fmt: skip
def test_another_python_tag_is_quoted(tag, suffix):
    with pytest.raises(legacy.LegacyFileError) as caught:
        load_yaml(f"value: {tag}\n")
    assert str(caught.value).startswith(f"the YAML holds the tag !!python/{suffix};")


@pytest.mark.parametrize("size", [0, 3, 5, 8])
def test_a_numpy_scalar_without_its_byte_count_gives_both(size):
    with pytest.raises(legacy.LegacyFileError) as caught:
        load_yaml(scalar("f4", "<", b"\x01" * size))
    assert "a numpy scalar of float32 without 4 bytes" in str(caught.value)
    exact = np.array(1.5, dtype="<f4").tobytes()
    assert load_yaml(scalar("f4", "<", exact))["value"] == 1.5


def aliases(depth):
    """Each level a list of the previous one four times: 4**depth leaves."""
    lines = ["a0: &a0 [x, x, x, x]"]
    for n in range(1, depth + 1):
        lines.append(f"a{n}: &a{n} [*a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}]")
    return "\n".join(lines) + "\n"


def test_aliases_past_eight_nodes_a_character_are_refused_with_the_bound():
    text = aliases(6)
    with pytest.raises(legacy.LegacyFileError) as caught:
        load_yaml(text, "m.yaml")
    bound = 8 * len(text)
    assert str(caught.value) == (
        f"m.yaml: the YAML's aliases expand to more than {bound} nodes (a document "
        f"of {len(text)} characters): refused."
    )


def test_aliases_within_the_bound_are_read():
    """Two levels: 1 + 4 * (1 + 4 * 5) nodes under the last key, far below
    eight a character."""
    loaded = load_yaml(aliases(2))
    assert loaded["a2"] == [[["x"] * 4] * 4] * 4


def test_text_that_is_not_yaml_is_named_with_the_path():
    with pytest.raises(legacy.LegacyFileError) as caught:
        load_yaml("value: [unclosed\n", "m.yaml")
    assert str(caught.value).startswith("m.yaml: not valid YAML: ")
    assert "\n" not in str(caught.value)
