"""Where ``taskctl`` writes: JSON for programs, rich tables for people, errors to stderr.

JSON is the contract's own JSON mapping (``MessageToDict`` with the proto's snake_case field
names), what ``grpcurl -emit-defaults`` prints for the same call: fields at their default
value are printed too (``"priority": 0``, ``"tasks": []``), so that a script sees the same
shape every time. int64 fields are strings there, as the protobuf JSON mapping says. Streams
(``watch``) print one compact object per line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, RenderableType

from ._progress import NoDisplay, Spinner, WaitDisplay

M = TypeVar("M", bound=Message)
PIPE_WIDTH = 1000


def message_to_dict(message: Message) -> dict[str, Any]:
    """The proto3 JSON mapping of ``message``, with the field names of the ``.proto``."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _whole_numbers(value: Any) -> Any:
    """``3.0`` -> ``3``: Struct numbers are doubles, but a payload's ``1`` should print as 1
    (as grpcurl prints it); JSON has one number type, so nothing is lost."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


class Output:
    """One command's output, in JSON or as tables; decided once, from ``--json``/TTY."""

    def __init__(self, *, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json_mode = json_mode
        self._stdout = stdout
        # Colour and width come from the terminal; piped into a file or grep, lines are not
        # wrapped at rich's default of 80 columns, tables take the width they need.
        width = None if stdout.isatty() else PIPE_WIDTH
        self._console = Console(file=stdout, highlight=False, width=width)
        self._errors = Console(file=stderr, highlight=False)
        self._stderr_is_tty = stderr.isatty()
        #: The spinner of the wait in progress (``waiting``), paused around every line.
        self._display: WaitDisplay = NoDisplay()

    @property
    def err_console(self) -> Console:
        """The console on stderr, for live displays (progress bars) beside the output."""
        return self._errors

    @property
    def err_is_tty(self) -> bool:
        """Whether stderr is a terminal."""
        return self._stderr_is_tty

    @property
    def draws_progress(self) -> bool:
        """Whether a live display (spinner, progress bar) is drawn: only for a person, on a
        terminal's stderr, and never beside JSON output, which is for programs."""
        return self._stderr_is_tty and not self.json_mode

    @contextlib.contextmanager
    def waiting(self, text: str) -> Iterator[WaitDisplay]:
        """A spinner on stderr saying ``text`` for as long as the block runs (a terminal
        and no JSON only: otherwise a display that draws nothing). Lines printed meanwhile
        appear above it."""
        display: WaitDisplay = Spinner(self._errors, text) if self.draws_progress else NoDisplay()
        self._display = display
        try:
            yield display
        finally:
            display.close()
            self._display = NoDisplay()

    def show(self, message: M, render: Callable[[M], RenderableType]) -> None:
        """A response: as JSON, or as ``render(message)`` for people."""
        with self._display.paused():
            if self.json_mode:
                self.write_json(message_to_dict(message))
            else:
                self._console.print(render(message))

    def show_event(self, message: M, render: Callable[[M], RenderableType]) -> None:
        """One item of a stream: a JSON line, or one rendered line."""
        with self._display.paused():
            if self.json_mode:
                self.write_json(message_to_dict(message), compact=True)
            else:
                self._console.print(render(message))

    def write_json(self, document: Any, *, compact: bool = False) -> None:
        document = _whole_numbers(document)
        indent, separators = (None, (",", ":")) if compact else (2, None)
        text = json.dumps(document, indent=indent, separators=separators, ensure_ascii=False)
        self._stdout.write(text + "\n")
        self._stdout.flush()

    def say(self, text: str) -> None:
        """A sentence for people on stdout (``deleted t1``); nothing in JSON mode."""
        if not self.json_mode:
            with self._display.paused():
                self._console.print(text, markup=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """A hint on stderr (``more: --page-token …``), so it never pollutes piped output."""
        with self._display.paused():
            self._errors.print(text, style="dim", markup=False, soft_wrap=True)

    def error(self, text: str) -> None:
        """``error: <text>`` on stderr, on one line, brackets in the details kept as they are."""
        with self._display.paused():
            self._errors.print(f"error: {text}", style="red", markup=False, soft_wrap=True)
