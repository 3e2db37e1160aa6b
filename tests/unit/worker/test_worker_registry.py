"""Declaring handlers and collecting them into a registry."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

import pytest

from worker_service import TaskContext, TaskInfo, handler
from worker_service.errors import RegistryError
from worker_service.registry import MARK_ATTRIBUTE, HandlerKind, HandlerMark, HandlerRegistry

BUILTIN_TYPES = [
    "bar",
    "baz",
    "cpu_process",
    "foo",
    "generate_report",
    "mult3",
    "process_data",
    "send_email",
    "sum2",
    "surprise",
]


@handler("module_level_cpu", cpu_bound=True)
def module_level_cpu(payload: dict[str, Any], info: TaskInfo) -> dict[str, Any]:
    return {}


def test_the_decorator_only_marks_the_function() -> None:
    async def original(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    decorated = handler("marked")(original)

    assert decorated is original
    assert getattr(original, MARK_ATTRIBUTE) == HandlerMark(name="marked", cpu_bound=False)
    assert len(HandlerRegistry()) == 0  # nothing global was registered


@pytest.mark.parametrize("name", ["", "1abc", "has space", "x" * 129, "slash/type"])
def test_invalid_type_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError, match="invalid task type name"):
        handler(name)


def test_cpu_bound_must_not_be_async() -> None:
    async def coroutine(payload: dict[str, Any], info: TaskInfo) -> None:
        return None

    with pytest.raises(RegistryError, match="needs a plain function"):
        handler("cpu", cpu_bound=True)(coroutine)


def test_kinds_follow_the_function() -> None:
    @handler("a")
    async def run_async(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    @handler("t")
    def run_thread(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    registry = HandlerRegistry()
    assert registry.add(run_async).kind is HandlerKind.ASYNC
    assert registry.add(run_thread).kind is HandlerKind.THREAD
    assert registry.add(module_level_cpu).kind is HandlerKind.PROCESS
    assert registry.names() == ["a", "module_level_cpu", "t"]


def test_cpu_bound_handlers_must_be_module_level() -> None:
    @handler("nested_cpu", cpu_bound=True)
    def nested(payload: dict[str, Any], info: TaskInfo) -> None:
        return None

    with pytest.raises(RegistryError, match="module-level"):
        HandlerRegistry().add(nested)


def test_unmarked_functions_are_refused() -> None:
    def plain(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    with pytest.raises(RegistryError, match="not marked"):
        HandlerRegistry().add(plain)


def test_a_duplicate_name_names_both_functions() -> None:
    @handler("same")
    async def first(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    @handler("same")
    async def second(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    registry = HandlerRegistry()
    registry.add(first)
    with pytest.raises(RegistryError) as caught:
        registry.add(second)
    message = str(caught.value)
    assert "'same' is defined twice" in message
    assert "first" in message and "second" in message


def test_the_same_function_found_twice_counts_once() -> None:
    registry = HandlerRegistry()
    registry.add(module_level_cpu)
    registry.add(module_level_cpu)
    assert len(registry) == 1


def test_builtins() -> None:
    registry = HandlerRegistry.with_builtins()
    assert registry.names() == BUILTIN_TYPES
    assert registry.get("cpu_process") is not None
    assert registry.get("cpu_process").kind is HandlerKind.PROCESS  # type: ignore[union-attr]


def _write_module(tmp_path: Any, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def module_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("wtest_"):
            del sys.modules[name]


def test_handlers_are_loaded_from_a_module_by_name(module_dir: Any) -> None:
    _write_module(
        module_dir,
        "wtest_user_handlers",
        """
        from worker_service import handler

        @handler("resize")
        async def resize(payload, ctx):
            return {"width": payload["width"] // 2}

        @handler("archive")
        def archive(payload, ctx):
            return None

        def helper():
            return 1
        """,
    )
    registry = HandlerRegistry.with_builtins()
    found = registry.add_module_name("wtest_user_handlers")
    assert sorted(h.name for h in found) == ["archive", "resize"]
    assert "resize" in registry and "archive" in registry
    assert registry.get("archive").kind is HandlerKind.THREAD  # type: ignore[union-attr]


def test_a_module_re_exporting_a_builtin_is_not_a_duplicate(module_dir: Any) -> None:
    _write_module(
        module_dir,
        "wtest_reexport",
        """
        from worker_service import handler
        from worker_service.builtin.basic import foo

        @handler("mine")
        async def mine(payload, ctx):
            return None
        """,
    )
    registry = HandlerRegistry.with_builtins()
    registry.add_module_name("wtest_reexport")
    assert "mine" in registry


def test_a_module_clashing_with_a_builtin_is_an_error(module_dir: Any) -> None:
    _write_module(
        module_dir,
        "wtest_clash",
        """
        from worker_service import handler

        @handler("foo")
        async def my_foo(payload, ctx):
            return None
        """,
    )
    with pytest.raises(RegistryError, match=r"'foo' is defined twice.*basic\.foo.*my_foo"):
        HandlerRegistry.with_builtins().add_module_name("wtest_clash")


def test_module_errors_are_clear(module_dir: Any) -> None:
    _write_module(module_dir, "wtest_empty", "X = 1\n")
    _write_module(module_dir, "wtest_broken", "raise RuntimeError('boom')\n")
    registry = HandlerRegistry()
    with pytest.raises(RegistryError, match=r"'wtest_missing'.*ModuleNotFoundError"):
        registry.add_module_name("wtest_missing")
    with pytest.raises(RegistryError, match=r"'wtest_broken'.*RuntimeError: boom"):
        registry.add_module_name("wtest_broken")
    with pytest.raises(RegistryError, match="'wtest_empty' defines no @handler"):
        registry.add_module_name("wtest_empty")


def test_select_narrows_and_names_unknown_types() -> None:
    registry = HandlerRegistry.with_builtins()
    assert registry.select(["sum2", "foo", "sum2"]).names() == ["foo", "sum2"]
    with pytest.raises(RegistryError, match=r"task type\(s\) fooo, nope; known: bar, baz"):
        registry.select(["foo", "fooo", "nope"])
