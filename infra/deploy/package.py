"""Build each function's zip: project packages plus dependencies vendored for Lambda.

Dependencies are manylinux wheels for the target Python, pinned by ``constraints.txt``, so a
zip built on a laptop runs on AWS. Zips are byte-for-byte reproducible (sorted entries, fixed
timestamps), so the same sources give the same S3 key and a second deploy changes nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.deploy.bytecode import builds_for, compiled, pyc_name
from infra.errors import PackagingFailed
from infra.settings import Settings
from infra.stack.functions import FunctionSpec

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_PARTS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})


@dataclass(frozen=True)
class Artifact:
    function: FunctionSpec
    path: Path
    sha256: str

    @property
    def key(self) -> str:
        return f"functions/{self.function.name}-{self.sha256[:20]}.zip"


def _files(base: Path) -> list[tuple[str, Path]]:
    found = []
    for path in base.rglob("*"):
        relative = path.relative_to(base)
        if path.is_file() and not SKIP_PARTS.intersection(relative.parts):
            if path.suffix in (".pyc", ".pyo"):
                continue
            found.append((relative.as_posix(), path))
    return found


def write_zip(entries: list[tuple[str, Path]], target: Path, *,
              bytecode: bool = False) -> str:
    """Write a reproducible zip and return its sha256; with ``bytecode``, each ``.py`` with
    its ``.pyc`` (``infra.deploy.bytecode``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        contents = {name: path.read_bytes() for name, path in entries}
        if bytecode:
            for name, data in list(contents.items()):
                pyc = compiled(data, name) if name.endswith(".py") else None
                if pyc is not None:
                    contents[pyc_name(name)] = pyc
        for name in sorted(contents):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, contents[name])
    return hashlib.sha256(target.read_bytes()).hexdigest()


def pip_command(spec: FunctionSpec, settings: Settings, target: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target),
        "--platform", settings.lambda_platform,
        "--implementation", "cp",
        "--python-version", settings.lambda_python,
        "--only-binary=:all:",
        "--constraint", str(settings.root / "constraints.txt"),
        *spec.requirements,
    ]


def vendor(spec: FunctionSpec, settings: Settings) -> Path:
    """Install the function's dependencies into a cached folder keyed by what decides them
    (an empty folder for a function without any)."""
    command = pip_command(spec, settings, Path("TARGET"))
    constraints = (settings.root / "constraints.txt").read_bytes()
    digest = hashlib.sha256(" ".join(command[1:]).encode() + constraints).hexdigest()[:16]
    target = settings.deps_dir / f"{spec.name}-{digest}"
    if (target / ".complete").exists():
        return target
    if not spec.requirements:  # pip refuses to install nothing
        target.mkdir(parents=True, exist_ok=True)
        (target / ".complete").write_text(digest)
        return target
    shutil.rmtree(target, ignore_errors=True)
    result = subprocess.run(
        pip_command(spec, settings, target), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PackagingFailed(
            f"pip could not vendor {', '.join(spec.requirements)} for {spec.name}: {last[0]}",
            "check that PyPI is reachable and constraints.txt pins versions with manylinux wheels",
        )
    (target / ".complete").write_text(digest)
    return target


def build(spec: FunctionSpec, settings: Settings,
          extra: Sequence[tuple[str, Path]] = (), *, target_dir: Path | None = None,
          bytecode: bool | None = None) -> Artifact:
    """The function's zip (in ``target_dir``, default the build folder); ``extra`` adds
    (name in the zip, file) entries, such as the policy bundled into the gateway.
    ``bytecode``: a ``.pyc`` per module (default: when this interpreter is the functions'
    Python version, ``infra.deploy.bytecode``)."""
    deps = vendor(spec, settings)
    entries = [(name, path) for name, path in _files(deps) if name != ".complete"]
    entries = [e for e in entries if not e[0].split("/")[0].endswith(".dist-info")
               or e[0].endswith(("METADATA", "RECORD", "licenses"))]
    for package in spec.packages:
        entries += [(f"{package}/{name}", path) for name, path in _files(settings.root / package)]
    entries += list(extra)
    target = (target_dir or settings.build_dir) / f"{spec.name}.zip"
    if bytecode is None:
        bytecode = builds_for(settings.lambda_python)
    sha = write_zip(entries, target, bytecode=bytecode)
    return Artifact(spec, target, sha)
