"""The package as an index and a type checker see it: the wheel and the
sdist built from this tree hold what they should (``py.typed`` included),
``twine check`` passes them, and mypy passes ``keras_bn/``. None of it
depends on the backend: it runs on one."""

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND", "tensorflow") != "jax",
        reason="packaging does not depend on the backend: checked on JAX only",
    ),
]


def _source_files():
    """The package's files in this tree: every module and py.typed."""
    package = ROOT / "keras_bn"
    return sorted(
        str(path.relative_to(ROOT))
        for path in package.rglob("*")
        if path.suffix == ".py" or path.name == "py.typed"
        if "__pycache__" not in path.parts
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and the sdist, built from this tree as pip would (without
    build isolation: the dev install has the build backend)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
         str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_holds_the_package_and_nothing_else(dist):
    wheel, _ = dist
    names = zipfile.ZipFile(wheel).namelist()
    package = sorted(name for name in names if not name.startswith("keras_bn-"))
    assert package == _source_files()
    assert "keras_bn/py.typed" in package
    metadata = [name for name in names if name.startswith("keras_bn-")]
    assert any(name.endswith("licenses/LICENSE") for name in metadata)
    entry_points = zipfile.ZipFile(wheel).read(
        next(name for name in metadata if name.endswith("entry_points.txt"))
    )
    assert b"keras-bn = keras_bn.cli:main" in entry_points


def test_the_sdist_holds_the_package_and_docs_but_no_tests(dist):
    _, sdist = dist
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    files = set(names)
    assert set(_source_files()) <= files
    docs = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")}
    assert docs <= files
    assert {"README.md", "LICENSE", "pyproject.toml", "PKG-INFO"} <= files
    # The tests need the repository's fixtures and scripts: a clone runs them.
    assert not [name for name in files if name.startswith(("tests", "scripts"))]


def test_twine_check_passes(dist):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_mypy_passes_the_package(tmp_path):
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(tmp_path / "cache"), str(ROOT / "keras_bn")]
    )  # fmt: skip
    assert status == 0, out + err
    assert out.startswith("Success: no issues found")
