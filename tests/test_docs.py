"""The ```python blocks of README.md and docs/*.md, run as a reader runs them.

The blocks of one Markdown file run in the order they appear, in one
namespace and one fresh temporary working directory for that file: the
documents are written to be pasted one block after another into one Python
interpreter (a later block may use what an earlier one defined). The test of
block k first runs the file's blocks before k that have not run yet, so each
block can also be run alone (``-k "docs/legacy.md:200"``).

An HTML comment on the line just before a fence qualifies the block:

- ``<!-- fragment: REASON -->``: deliberately not runnable here (it needs
  several hosts, a cluster, a file of the user's own...). The test checks
  that a reason is given and that the block compiles; it never runs, and
  later blocks do not see it.
- ``<!-- backend: NAME -->``: runs on that Keras backend only (e.g. a
  ``keras.distribution`` or ``tf.distribute`` example); skipped on the others.

A block skips, with the reason, where a package it imports (or PyYAML, for
a block that reads a ``.yaml`` file) is not installed: the floor environment
of ``scripts/run_floor_tests.py`` has neither PyTorch nor PyYAML.

The old files the documents read (``old.h5``, ``old_model.h5``, ...) stand
for the user's own: before a file's first block, each name that file's blocks
quote is copied into its working directory from a real fixture under
``tests/fixtures/real/`` (``STAND_INS``), so the blocks load what the old
releases wrote. A block that changes Keras' global distribution has it
restored after its test, so that no other test inherits it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import keras
import pytest
import real_fixtures as rf

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REAL = ROOT / "tests" / "fixtures" / "real"

FENCE = re.compile(r"^(\s*)```python\s*$")
CLOSE = re.compile(r"^\s*```\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>[\w-]+)\s*:(?P<value>.*?)-->\s*$")
MARKER_KINDS = ("fragment", "backend")
BACKENDS = ("jax", "tensorflow", "torch")


# The user's old files that the documents name, and what stands in for each:
# a file that an old release wrote itself (copied), or a function that writes
# the stand-in from one.
STAND_INS = {
    # README.md: a whole-model file, and a Keras 1.x weights file that cannot
    # tell whether its fourth BatchNormalization array is a std (1.0.5: it is)
    # for the same architecture.
    "old.h5": REAL / "keras-2.2.4-tensorflow" / "dense.model.h5",
    "k1.h5": REAL / "keras-1.0.5-theano" / "dense.weights.h5",
    # docs/legacy.md
    "old_model.h5": REAL / "keras-2.2.4-tensorflow" / "dense.model.h5",
    "old_weights.h5": REAL / "keras-2.2.4-tensorflow" / "dense.weights.h5",
    # docs/legacy_models.md: to_json(), to_yaml() and save_weights() of one
    # model; a Keras 0.3.3 convolutional model (Theano); the Lambda example.
    "arch.json": REAL / "keras-2.2.4-tensorflow" / "dense.json",
    "arch.yaml": REAL / "keras-2.2.4-tensorflow" / "dense.yaml",
    "weights.h5": REAL / "keras-2.2.4-tensorflow" / "dense.weights.h5",
    "k0.json": REAL / "keras-0.3.3-theano" / "conv2d_cf.json",
    "w.h5": REAL / "keras-0.3.3-theano" / "conv2d_cf.weights.h5",
    "lambda_arch.json": rf.write_with_a_lambda,
    "lambda_weights.h5": REAL / "keras-1.2.2-tensorflow" / "functional.weights.h5",
}


@dataclass(frozen=True)
class Block:
    doc: Path
    index: int  # position among the doc's python blocks
    line: int  # 1-based line of the opening fence
    source: str
    marker: tuple[str, str] | None  # (kind, value) of the comment before it

    @property
    def id(self):
        return f"{self.doc.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def fragment(self):
        return self.marker is not None and self.marker[0] == "fragment"

    @property
    def backend(self):
        if self.marker is not None and self.marker[0] == "backend":
            return self.marker[1]
        return None

    def quoted_names(self):
        """The string literals of the block (file names among them)."""
        tree = ast.parse(self.source)
        return {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }

    def missing_packages(self):
        """What the block imports (or, reading a YAML file, needs) that is
        not installed."""
        tree = ast.parse(self.source)
        needed = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                needed.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                needed.add(node.module.split(".")[0])
        if any(name.endswith((".yaml", ".yml")) for name in self.quoted_names()):
            needed.add("yaml")
        return sorted(name for name in needed if importlib.util.find_spec(name) is None)


def extract(doc):
    """The ```python blocks of a Markdown file, with the marker before each."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not CLOSE.match(lines[i]):
            i += 1
        if i == len(lines):
            raise ValueError(f"{doc}:{start + 1}: a ```python fence never closed")
        body = textwrap.dedent("\n".join(lines[start + 1 : i])) + "\n"
        marker = MARKER.match(lines[start - 1]) if start else None
        blocks.append(
            Block(
                doc=doc,
                index=len(blocks),
                line=start + 1,
                source=body,
                marker=None
                if marker is None
                else (marker["kind"], marker["value"].strip()),
            )
        )
        i += 1
    return blocks


BLOCKS = {doc: extract(doc) for doc in DOCS}
ALL_BLOCKS = [block for blocks in BLOCKS.values() for block in blocks]


def _skip_reason(block):
    """Why the block does not run here, or None."""
    if block.fragment:
        return f"a fragment: {block.marker[1]}"
    if block.backend is not None and block.backend != BACKEND:
        return f"a {block.backend} block (backend here: {BACKEND})"
    missing = block.missing_packages()
    if missing:
        return f"needs {', '.join(missing)}, not installed"
    return None


def _run(block, namespace):
    # Padded with blank lines, so that a traceback names the document's
    # own line numbers.
    code = compile("\n" * block.line + block.source, str(block.doc), "exec")
    exec(code, namespace)


class Reader:
    """One document read so far: its namespace, its working directory, and
    the index of the last block run (or passed over)."""

    def __init__(self, doc, workdir):
        self.doc = doc
        self.workdir = workdir
        self.namespace = {"__name__": "__main__"}
        self.last = -1
        names = set().union(*(block.quoted_names() for block in BLOCKS[doc]))
        for name in sorted(names & STAND_INS.keys()):
            source = STAND_INS[name]
            if callable(source):
                source(workdir / name)
            else:
                shutil.copyfile(source, workdir / name)


@pytest.fixture(scope="module")
def readers():
    return {}


@pytest.fixture(autouse=True)
def _global_distribution_restored():
    distribution = getattr(keras, "distribution", None)
    before = distribution.distribution() if distribution is not None else None
    yield
    if distribution is not None and distribution.distribution() is not before:
        distribution.set_distribution(before)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda block: block.id)
def test_block(block, readers, tmp_path_factory, monkeypatch):
    if block.fragment:
        assert block.marker[1], f"{block.id}: a fragment marker gives no reason"
        compile(block.source, block.id, "exec")
        return
    reason = _skip_reason(block)
    if reason is not None:
        pytest.skip(reason)
    reader = readers.get(block.doc)
    if reader is None or reader.last >= block.index:
        name = re.sub(r"\W+", "_", block.doc.stem)
        reader = Reader(block.doc, tmp_path_factory.mktemp(name))
        readers[block.doc] = reader
    monkeypatch.chdir(reader.workdir)
    for earlier in BLOCKS[block.doc][reader.last + 1 : block.index]:
        if _skip_reason(earlier) is None:
            try:
                _run(earlier, reader.namespace)
            except Exception as error:
                readers.pop(block.doc)
                pytest.fail(
                    f"an earlier block of the same file, {earlier.id}, failed: "
                    f"{type(error).__name__}: {error}"
                )
        reader.last = earlier.index
    reader.last = block.index
    try:
        _run(block, reader.namespace)
    except BaseException:
        # The next block's test starts the document again, this one included.
        readers.pop(block.doc)
        raise


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_markers_are_known(doc):
    """Every comment before a ```python fence is a marker this test reads:
    a fragment with its reason, or a backend that exists."""
    for block in BLOCKS[doc]:
        if block.marker is None:
            continue
        kind, value = block.marker
        assert kind in MARKER_KINDS, f"{block.id}: unknown marker {kind!r}"
        if kind == "fragment":
            assert value, f"{block.id}: a fragment marker gives no reason"
        else:
            assert value in BACKENDS, f"{block.id}: unknown backend {value!r}"
    lines = doc.read_text(encoding="utf-8").splitlines()
    for number, (line, following) in enumerate(zip(lines, lines[1:] + [""]), 1):
        marker = MARKER.match(line)
        if marker is not None and marker["kind"] in MARKER_KINDS:
            assert FENCE.match(following), (
                f"{doc.name}:{number}: a marker not just before a ```python fence"
            )


def test_the_documents_have_python_blocks():
    """The extraction finds the blocks (a changed fence would leave none)."""
    assert len(BLOCKS[ROOT / "README.md"]) >= 3
    assert len(ALL_BLOCKS) >= 10
    assert len({block.id for block in ALL_BLOCKS}) == len(ALL_BLOCKS)


def test_every_stand_in_is_read_by_a_document():
    """No stand-in outlives the block that read its file, and each real one
    exists."""
    quoted = set().union(*(block.quoted_names() for block in ALL_BLOCKS))
    assert STAND_INS.keys() <= quoted, sorted(STAND_INS.keys() - quoted)
    for name, source in STAND_INS.items():
        assert callable(source) or source.is_file(), (name, source)


def test_a_failing_block_fails(tmp_path, monkeypatch):
    """The runner reports a block that raises, at the document's line."""
    monkeypatch.chdir(tmp_path)
    broken = Block(
        doc=ROOT / "README.md",
        index=0,
        line=7,
        source="x = 1\nraise RuntimeError('broken')\n",
        marker=None,
    )
    with pytest.raises(RuntimeError, match="broken") as raised:
        _run(broken, {})
    assert raised.traceback[-1].lineno + 1 == 9
    assert os.fspath(raised.traceback[-1].path).endswith("README.md")
