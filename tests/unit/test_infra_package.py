"""infra.deploy.package: reproducible zips and the pip command that vendors Lambda dependencies."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from infra.deploy.package import FIXED_TIME, pip_command, write_zip
from infra.settings import Settings
from infra.stack.functions import GATEWAY, FunctionSpec

FILES = {
    "pkg/__init__.py": b"",
    "pkg/module.py": b"VALUE = 1\n" * 50,
    "pkg/sub/data.json": b'{"a": 1}',
    "top.py": b"print('hi')\n",
}


def _create(base: Path, names: list[str], mtime: int) -> list[tuple[str, Path]]:
    entries = []
    for name in names:
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FILES[name])
        os.utime(path, (mtime, mtime))
        entries.append((name, path))
    return entries


def test_write_zip_is_reproducible(tmp_path: Path) -> None:
    names = sorted(FILES)
    first = _create(tmp_path / "one", names, mtime=1_000_000_000)
    second = _create(tmp_path / "two", list(reversed(names)), mtime=1_700_000_000)
    sha_one = write_zip(first, tmp_path / "out" / "one.zip")
    sha_two = write_zip(list(reversed(second)), tmp_path / "out" / "two.zip")
    one = (tmp_path / "out" / "one.zip").read_bytes()
    two = (tmp_path / "out" / "two.zip").read_bytes()
    assert one == two
    assert sha_one == sha_two == hashlib.sha256(one).hexdigest()


def test_write_zip_rewrite_gives_same_bytes(tmp_path: Path) -> None:
    entries = _create(tmp_path / "src", sorted(FILES), mtime=1_600_000_000)
    target = tmp_path / "a.zip"
    first = write_zip(entries, target)
    first_bytes = target.read_bytes()
    for _, path in entries:
        os.utime(path, (1_650_000_000, 1_650_000_000))
    assert write_zip(entries, target) == first
    assert target.read_bytes() == first_bytes


def test_write_zip_content_changes_the_hash(tmp_path: Path) -> None:
    entries = _create(tmp_path / "src", sorted(FILES), mtime=1_600_000_000)
    before = write_zip(entries, tmp_path / "a.zip")
    (tmp_path / "src" / "top.py").write_bytes(b"print('changed')\n")
    assert write_zip(entries, tmp_path / "b.zip") != before


def test_write_zip_entries_are_sorted_with_fixed_times_and_content(tmp_path: Path) -> None:
    entries = _create(tmp_path / "src", list(reversed(sorted(FILES))), mtime=1_600_000_000)
    target = tmp_path / "nested" / "dir" / "out.zip"
    write_zip(entries, target)
    with zipfile.ZipFile(target) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(FILES)
        assert all(i.date_time == FIXED_TIME for i in infos)
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)
        assert all((i.external_attr >> 16) & 0o777 == 0o644 for i in infos)
        assert {i.filename: archive.read(i) for i in infos} == FILES


def test_pip_command_targets_manylinux_and_the_python_version(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, lambda_python="3.12")
    command = pip_command(GATEWAY, settings, tmp_path / "deps")
    assert command[1:4] == ["-m", "pip", "install"]

    def option(name: str) -> str:
        return command[command.index(name) + 1]

    assert option("--platform") == "manylinux2014_x86_64"
    assert option("--platform").startswith("manylinux")
    assert option("--python-version") == "3.12"
    assert option("--implementation") == "cp"
    assert option("--target") == str(tmp_path / "deps")
    assert option("--constraint") == str(tmp_path / "constraints.txt")
    assert "--only-binary=:all:" in command
    assert command[-len(GATEWAY.requirements):] == list(GATEWAY.requirements)


def test_pip_command_uses_the_function_requirements(tmp_path: Path) -> None:
    spec = FunctionSpec(name="x", handler="x.h", packages=("x",), requirements=("pyyaml",))
    command = pip_command(spec, Settings(root=tmp_path, lambda_platform="manylinux_2_28_aarch64"),
                          tmp_path)
    assert command[-1] == "pyyaml"
    assert command[command.index("--platform") + 1] == "manylinux_2_28_aarch64"
    assert "fastapi" not in command
