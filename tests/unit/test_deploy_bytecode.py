"""infra.deploy.bytecode: each .py of a zip with an unchecked hash-based .pyc that Python
loads from a read-only folder, as Lambda's /var/task is, without compiling the source."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from infra.deploy.bytecode import builds_for, compiled, pyc_name
from infra.deploy.package import write_zip

SOURCE = b"VALUE = 41 + 1\n"


def test_pyc_name_is_where_the_import_system_looks() -> None:
    tag = sys.implementation.cache_tag
    assert pyc_name("pkg/sub/mod.py") == f"pkg/sub/__pycache__/mod.{tag}.pyc"
    assert pyc_name("top.py") == f"__pycache__/top.{tag}.pyc"


def test_only_the_functions_python_version_is_compiled_for() -> None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert builds_for(here)
    assert not builds_for("3.99")


def test_a_pyc_is_unchecked_hash_based_and_reproducible() -> None:
    pyc = compiled(SOURCE, "pkg/mod.py")
    assert pyc is not None
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, unchecked (PEP 552)
    assert compiled(SOURCE, "pkg/mod.py") == pyc  # no timestamp: the zip stays reproducible
    assert compiled(b"def broken(:\n", "pkg/bad.py") is None  # stays source only


def _tree(base: Path) -> list[tuple[str, Path]]:
    files = {"pkg/__init__.py": b"", "pkg/mod.py": SOURCE, "pkg/data.json": b"{}",
             "pkg/other_version.py": b"match = (lambda: 1\n"}
    entries = []
    for name, data in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries.append((name, path))
    return entries


def test_python_imports_the_zips_bytecode_from_a_read_only_folder(tmp_path: Path) -> None:
    entries = _tree(tmp_path / "src")
    sha = write_zip(entries, tmp_path / "a.zip", bytecode=True)
    assert write_zip(list(reversed(entries)), tmp_path / "b.zip", bytecode=True) == sha
    names = set(zipfile.ZipFile(tmp_path / "a.zip").namelist())
    assert {pyc_name("pkg/__init__.py"), pyc_name("pkg/mod.py")} <= names
    assert pyc_name("pkg/other_version.py") not in names  # does not compile here
    assert pyc_name("pkg/data.json") not in names
    unpacked = tmp_path / "task"
    zipfile.ZipFile(tmp_path / "a.zip").extractall(unpacked)
    # The source changed after the build: a module loaded from the .pyc still says 42, which
    # proves the import read the bytecode (an unchecked .pyc is never compared with it).
    (unpacked / "pkg" / "mod.py").write_bytes(b"VALUE = 0\n")
    subprocess.run(["chmod", "-R", "a-w", str(unpacked)], check=True)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-B", "-c",
             f"import sys; sys.path.insert(0, {str(unpacked)!r}); import pkg.mod; "
             "print(pkg.mod.VALUE, pkg.mod.__cached__)"],
            capture_output=True, text=True, check=True, cwd=tmp_path)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(unpacked)], check=True)
    value, cached = done.stdout.split()
    assert value == "42"
    assert cached.endswith(pyc_name("pkg/mod.py"))


def test_without_bytecode_the_zip_has_sources_only(tmp_path: Path) -> None:
    write_zip(_tree(tmp_path / "src"), tmp_path / "a.zip")
    assert not [n for n in zipfile.ZipFile(tmp_path / "a.zip").namelist() if n.endswith(".pyc")]
