"""Builds the Java interop verifier (``tests/interop/java/``) with the JDK's ``javac`` against
the jars the local broker already uses (``<tools dir>/kafka-libs``: kafka-clients, jackson,
slf4j); nothing is downloaded. The classes are cached under ``<local dir>/interop/<hash>``,
keyed by the sources, the jars and the compiler's version, so a second run compiles nothing.

``python -m tests.interop.java_build`` builds it and prints the ``java`` command line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.settings import Settings

SOURCES = Path(__file__).resolve().parent / "java"
MAIN_CLASS = "meshgate.interop.Main"
# What the program needs from the broker's jars: the client, JSON, logging's API, and the
# codecs a producer may have compressed a batch with.
JAR_PREFIXES = ("kafka-clients-", "jackson-core-", "jackson-databind-", "jackson-annotations-",
                "slf4j-api-", "lz4-java-", "snappy-java-", "zstd-jni-")
COMPILE_TIMEOUT_S = 240.0
_DONE = ".complete"


class JavaBuildError(RuntimeError):
    """No JDK, no broker jars, or the sources do not compile: the message says which."""


@dataclass(frozen=True)
class JavaProgram:
    java: str
    classpath: str

    def command(self, *args: str) -> list[str]:
        return [self.java, "-cp", self.classpath, MAIN_CLASS, *args]


def jars(libs: Path) -> list[Path]:
    found = sorted(path for path in libs.glob("*.jar") if path.name.startswith(JAR_PREFIXES))
    missing = [p for p in JAR_PREFIXES[:5] if not any(j.name.startswith(p) for j in found)]
    if missing:
        raise JavaBuildError(f"java interop: no {', '.join(missing)}*.jar in {libs}; run "
                             "'localstack/kafka/kafka.sh fetch' (make up does)")
    return found


def build(libs: Path, cache: Path) -> JavaProgram:
    """The compiled verifier: built once per content hash into ``cache``."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        raise JavaBuildError("java interop: no JDK on PATH (javac/java); the local broker "
                             "needs JDK 17+ too: install it (apt-get install openjdk-17-jdk)")
    needed = jars(libs)
    sources = sorted(SOURCES.rglob("*.java"))
    version = subprocess.run([javac, "-version"], capture_output=True, text=True,
                             timeout=60, check=False)
    digest = hashlib.sha256((version.stdout + version.stderr).encode())
    for path in [*sources, *needed]:
        digest.update(path.name.encode() + b"\0")
        if path.suffix == ".java":
            digest.update(path.read_bytes())
    target = cache / digest.hexdigest()[:16]
    classpath = os.pathsep.join([str(target), *map(str, needed)])
    if (target / _DONE).exists():
        return JavaProgram(java, classpath)
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        compiled = subprocess.run(
            [javac, "-Xlint:all", "-d", str(scratch), "-cp",
             os.pathsep.join(map(str, needed)), *map(str, sources)],
            capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
        if compiled.returncode != 0:
            raise JavaBuildError(f"java interop: javac failed:\n{compiled.stderr[-4000:]}")
        (scratch / _DONE).write_text("ok\n")
        try:
            scratch.rename(target)
        except OSError:  # another run finished the same build first: use it
            if not (target / _DONE).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return JavaProgram(java, classpath)


def for_settings(settings: Settings) -> JavaProgram:
    """Built from the stack's broker jars into its local dir."""
    tools = settings.tools_dir or settings.local_dir
    return build(tools / "kafka-libs", settings.local_dir / "interop")


if __name__ == "__main__":
    try:
        program = for_settings(Settings.resolve())
    except JavaBuildError as exc:
        sys.exit(str(exc))
    print(" ".join(program.command()))
