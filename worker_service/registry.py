"""How task handlers are declared and found.

A handler is a function marked with :func:`handler`::

    @handler("resize")
    async def resize(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]: ...

The decorator only *marks* the function; nothing global changes at import time. A
:class:`HandlerRegistry` then collects the marked functions of the modules it is given
(the built-ins, and whatever ``--module`` names), so two workers in one process, or two
tests, never see each other's handlers.

The kind of a handler decides where it runs:

* ``async def``: on the event loop (it must not block);
* plain ``def``: in a thread, off the event loop;
* ``@handler(name, cpu_bound=True)`` on a module-level plain ``def``: in a process pool
  (spawned, never forked), receiving ``(payload, TaskInfo)``.

Async and thread handlers may report progress with ``ctx.report_progress(...)`` (see
:mod:`worker_service.context`); CPU-bound handlers cannot yet: the ``TaskInfo`` they receive
has no channel back from the process pool.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from orchestrator_client.protocol import TASK_TYPE_PATTERN

from .errors import RegistryError

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute :func:`handler` sets on a function.
MARK_ATTRIBUTE = "__orchestrator_handler__"
#: Task type names: a letter, then letters, digits, ``_``, ``.``, ``-``; at most 128.
TYPE_NAME = re.compile(TASK_TYPE_PATTERN)


class HandlerKind(enum.Enum):
    """Where a handler runs."""

    ASYNC = "async"
    THREAD = "thread"
    PROCESS = "process"


@dataclass(frozen=True)
class HandlerMark:
    """What :func:`handler` records on a function."""

    name: str
    cpu_bound: bool


def handler(name: str, *, cpu_bound: bool = False) -> Callable[[F], F]:
    """Mark a function as the handler of task type ``name``.

    ``cpu_bound=True`` runs the function in a process pool; it must then be a plain
    (not async) function defined at module level, so that it can be pickled by name.
    """
    if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
        raise RegistryError(
            f"invalid task type name {name!r}: a letter, then letters, digits, '_', '.', '-' "
            "(at most 128 characters)"
        )

    def mark(func: F) -> F:
        if not callable(func):
            raise RegistryError(f"@handler({name!r}) must decorate a function")
        if cpu_bound and inspect.iscoroutinefunction(func):
            raise RegistryError(
                f"@handler({name!r}, cpu_bound=True) needs a plain function, "
                f"not the coroutine function {_origin(func)}"
            )
        setattr(func, MARK_ATTRIBUTE, HandlerMark(name=name, cpu_bound=cpu_bound))
        return func

    return mark


def _origin(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


@dataclass(frozen=True)
class RegisteredHandler:
    """A handler found by the registry."""

    name: str
    func: Callable[..., Any]
    kind: HandlerKind

    @property
    def origin(self) -> str:
        """``module.function``, for error messages and logs."""
        return _origin(self.func)


def _kind(func: Callable[..., Any], mark: HandlerMark) -> HandlerKind:
    if mark.cpu_bound:
        qualname = getattr(func, "__qualname__", "")
        if "<locals>" in qualname or "." in qualname:
            raise RegistryError(
                f"cpu-bound handler {mark.name!r} ({_origin(func)}) must be a module-level "
                "function: it is sent to another process by name"
            )
        return HandlerKind.PROCESS
    if inspect.iscoroutinefunction(func):
        return HandlerKind.ASYNC
    return HandlerKind.THREAD


class HandlerRegistry:
    """Task type name -> handler, collected from modules.

    The same function found twice (a module re-exporting another's handler) counts once;
    two different functions claiming one name is an error naming both.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, RegisteredHandler] = {}

    @classmethod
    def with_builtins(cls) -> HandlerRegistry:
        """A registry holding the built-in task types."""
        from .builtin import BUILTIN_MODULES

        registry = cls()
        for module_name in BUILTIN_MODULES:
            registry.add_module_name(module_name)
        return registry

    def add(self, func: Callable[..., Any]) -> RegisteredHandler:
        """Register one marked function."""
        mark = getattr(func, MARK_ATTRIBUTE, None)
        if not isinstance(mark, HandlerMark):
            raise RegistryError(f"{_origin(func)} is not marked with @handler(...)")
        known = self._handlers.get(mark.name)
        if known is not None:
            if known.func is func:
                return known
            raise RegistryError(
                f"task type {mark.name!r} is defined twice: by {known.origin} "
                f"and by {_origin(func)}"
            )
        registered = RegisteredHandler(name=mark.name, func=func, kind=_kind(func, mark))
        self._handlers[mark.name] = registered
        return registered

    def add_module(self, module: ModuleType) -> list[RegisteredHandler]:
        """Register every marked function found in ``module``'s namespace."""
        found = [
            value
            for value in vars(module).values()
            if callable(value) and isinstance(getattr(value, MARK_ATTRIBUTE, None), HandlerMark)
        ]
        return [self.add(func) for func in found]

    def add_module_name(self, module_name: str) -> list[RegisteredHandler]:
        """Import ``module_name`` (as ``--module`` gives it) and register its handlers."""
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a user's module may fail in any way; say which one
            raise RegistryError(
                f"cannot import handler module {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        found = self.add_module(module)
        if not found:
            raise RegistryError(f"module {module_name!r} defines no @handler functions")
        return found

    def select(self, names: Iterable[str]) -> HandlerRegistry:
        """A registry with only ``names`` (``--task-types``); unknown names are an error."""
        wanted = list(dict.fromkeys(names))
        unknown = [name for name in wanted if name not in self._handlers]
        if unknown:
            raise RegistryError(
                f"no handler for task type(s) {', '.join(unknown)}; "
                f"known: {', '.join(self.names()) or '(none)'}"
            )
        selected = HandlerRegistry()
        selected._handlers = {name: self._handlers[name] for name in wanted}
        return selected

    def get(self, name: str) -> RegisteredHandler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        """The task types, sorted (the order of the worker's hello)."""
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[RegisteredHandler]:
        return iter(self._handlers[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._handlers)
