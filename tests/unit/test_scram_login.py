"""infra.local.scram_login's command: the exit codes kafka.sh decides on (0 logged in, 3
refused: set the admin again; anything else: an error, never taken for a refusal)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from infra.errors import NotReachable
from infra.local import scram_login


def _main(monkeypatch: pytest.MonkeyPatch, answer: bool | Exception) -> int:
    seen: list[tuple[str, Path, str, str]] = []

    async def login(bootstrap: str, cafile: Path, user: str, password: str) -> bool:
        seen.append((bootstrap, cafile, user, password))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(scram_login, "login_accepted", login)
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    code = scram_login.main(["127.0.0.1:9094", "/ca.pem", "admin"])
    assert seen == [("127.0.0.1:9094", Path("/ca.pem"), "admin", "s3cret")]
    return code


def test_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main(monkeypatch, True) == 0
    assert _main(monkeypatch, False) == scram_login.REFUSED == 3
    assert _main(monkeypatch, NotReachable("no answer", "start it")) == 2


def test_wrong_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert scram_login.main(["only-one"]) == 64
    assert "usage" in capsys.readouterr().err
