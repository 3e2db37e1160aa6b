"""What a person sees on stderr while ``taskctl`` waits: a spinner, what it waits for, how long.

:meth:`~._output.Output.waiting` picks the display: a spinner when stderr is a terminal and
the output is not JSON (a program reading JSON has nobody watching a spinner), else nothing.
It is never drawn on stdout, so piped output stays clean. ``batch`` has its own bar
(``_batch``), which knows how many tasks there are; a single wait does not, so it shows the
time elapsed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class WaitDisplay(Protocol):
    """A wait's display; ``update`` says what is being waited for now."""

    def update(self, text: str) -> None: ...

    def paused(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


class NoDisplay:
    """Not at a terminal, or JSON output: nothing is drawn."""

    def update(self, text: str) -> None:
        pass

    def paused(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        pass


class Spinner:
    """A one-line spinner with the text and the time elapsed, erased when it closes."""

    def __init__(self, console: Console, text: str) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task(text, total=None)
        self._progress.start()
        self._drawn = True

    def update(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Erased while a line is printed on stdout, then drawn again below it: on one
        terminal, stdout and stderr would otherwise write over each other."""
        if not self._drawn:
            yield
            return
        self._progress.stop()
        try:
            yield
        finally:
            self._progress.start()

    def close(self) -> None:
        if self._drawn:
            self._drawn = False
            self._progress.stop()
