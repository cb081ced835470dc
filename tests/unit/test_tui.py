"""The CLI's output modes: plain aligned lines for pipes (what tests and scripts parse),
rich tables and step spinners on a terminal; ``lifecycle.step`` keeps its plain lines."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from infra import tui
from infra.cli.main import _status_rows
from infra.local import lifecycle


def terminal() -> tuple[tui.RichSay, io.StringIO]:
    out = io.StringIO()
    say = tui.sayer(Console(file=out, force_terminal=True, width=120, color_system=None))
    assert isinstance(say, tui.RichSay)
    return say, out


def test_plain_table_aligns_columns_without_trailing_spaces() -> None:
    lines = tui.plain_table(("ID", "OWNER"), [("a", "alice"), ("long-id", "-")])
    assert lines == ["ID       OWNER", "a        alice", "long-id  -"]
    assert tui.plain_table(("A", "B"), []) == ["A  B"]


def test_show_table_is_plain_through_a_plain_say() -> None:
    lines: list[str] = []
    tui.show_table(lines.append, ("ID", "OWNER"), [("a", "alice")], title="ignored")
    assert lines == ["ID  OWNER", "a   alice"]


def test_show_table_is_a_rich_table_on_a_terminal() -> None:
    say, out = terminal()
    tui.show_table(say, ("ID", "OWNER"), [("k1", "alice")], title="API keys")
    text = out.getvalue()
    assert "API keys" in text
    assert "┃ ID" in text
    assert "│ k1" in text
    assert "alice" in text


def test_sayer_is_plain_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    say = tui.sayer()
    assert say is tui.plain_say
    say("hello")
    assert capsys.readouterr().out == "hello\n"


def test_step_keeps_its_plain_lines() -> None:
    lines: list[str] = []
    with lifecycle.step(lines.append, "topics"):
        lines.append("created x")
    assert lines[0] == "==> topics"
    assert lines[1] == "created x"
    assert lines[2].startswith("    done in ")
    with tui.activity(lines.append, "deploy"):  # nothing in plain mode
        pass
    assert len(lines) == 3


def test_step_on_a_terminal_ticks_or_crosses() -> None:
    say, out = terminal()
    with lifecycle.step(say, "Kafka broker"):
        say("kafka: already running")
        with lifecycle.step(say, "nested"):  # the outer spinner goes on
            pass
    assert "kafka: already running" in out.getvalue()
    assert "✓ Kafka broker" in out.getvalue()
    assert "nested" not in out.getvalue()
    with pytest.raises(RuntimeError), tui.activity(say, "deploy"):
        raise RuntimeError("boom")
    assert "✗ deploy" in out.getvalue()


def test_status_rows() -> None:
    rows = _status_rows({
        "endpoint": "http://e", "authorized_endpoint": None,
        "kafka": {"bootstrap": "127.0.0.1:9092", "running": True},
        "emulator": {"url": "http://127.0.0.1:4566", "running": False},
        "workers": {"orders": 12, "inventory": None}})
    assert rows == [("kafka", "running", "127.0.0.1:9092"),
                    ("emulator", "stopped", "http://127.0.0.1:4566"),
                    ("endpoint", "deployed", "http://e"), ("authorized endpoint", "-", "-"),
                    ("worker orders", "running", "pid 12"), ("worker inventory", "stopped", "-")]
