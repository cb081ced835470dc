"""How the ``meshgate`` CLI talks to a person: plain lines when stdout is a pipe or a file
(tests and scripts parse them), rich tables, colours and step spinners on a terminal.

Commands keep taking a ``say`` callable. ``sayer()`` returns either plain ``print`` or a
``RichSay``; ``show_table`` and ``activity`` pick their rendering from which one they got, so
a command's logic never asks whether it runs on a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

Say = Callable[[str], None]


def plain_say(line: str) -> None:
    print(line, flush=True)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows aligned in columns two spaces apart, headers first; no trailing spaces."""
    table = [tuple(headers), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in table]


class RichSay:
    """``say`` for a terminal: lines through a rich console, plus tables and step spinners."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None

    def __call__(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
              title: str | None = None) -> None:
        table = Table(title=title, header_style="bold", title_justify="left")
        for name in headers:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A spinner with the elapsed time while the step runs; lines said meanwhile print
        above it; a tick (or a cross on failure) with the duration when it ends."""
        if self._progress is not None:  # nested: the outer spinner goes on
            yield
            return
        started = time.monotonic()
        progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                            TimeElapsedColumn(), console=self.console, transient=True)
        self._progress = progress
        ok = False
        try:
            with progress:
                progress.add_task(title, total=None)
                yield
            ok = True
        finally:
            self._progress = None
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            self.console.print(f"{mark} {title} [dim]({time.monotonic() - started:.1f}s)[/]",
                               highlight=False)


def sayer(console: Console | None = None) -> Say:
    """Plain ``print`` unless stdout is a terminal (or ``console`` is given)."""
    if console is not None:
        return RichSay(console)
    return RichSay(Console()) if sys.stdout.isatty() else plain_say


def show_table(say: Say, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
               title: str | None = None) -> None:
    if isinstance(say, RichSay):
        say.table(headers, rows, title=title)
    else:
        for line in plain_table(headers, rows):
            say(line)


@contextmanager
def activity(say: Say, title: str) -> Iterator[None]:
    """A spinner on a terminal; nothing at all in plain mode."""
    if isinstance(say, RichSay):
        with say.step(title):
            yield
    else:
        yield
