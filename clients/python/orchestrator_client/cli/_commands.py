"""What each ``taskctl`` command does: call the client, hand the answer to the output.

A command is ``async def (ctx, args) -> exit status``. Errors are not caught here: the
client's typed errors and :class:`UsageError` travel up to ``main``, which maps them to
exit statuses in one place.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2
from rich.text import Text

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2

from .._client import AsyncClient
from .._errors import DeadlineExceeded, WatchEnded
from .._requests import Backoff
from .._states import TERMINAL_STATES, state_name
from ._exit import ExitCode, UsageError
from ._output import Output
from ._tables import (
    event_line,
    explain_view,
    schedule_detail,
    schedule_line,
    schedule_table,
    stats_view,
    task_detail,
    task_table,
    task_type_limits_line,
    task_type_line,
    task_type_table,
    worker_table,
)
from ._values import format_duration, parse_param_value

#: The largest page the contract allows; listings of everything use it.
MAX_PAGE_SIZE = 1000


@dataclass
class Context:
    """What every command works with."""

    client: AsyncClient
    out: Output
    #: Asks a yes/no question; ``None`` when nobody is at a terminal to answer.
    confirm: Callable[[str], Awaitable[bool]] | None


Command = Callable[[Context, argparse.Namespace], Awaitable[int]]


def _outcome(task: task_pb2.Task) -> int:
    return (
        ExitCode.OK if task.state == task_pb2.TASK_STATE_SUCCEEDED else ExitCode.TASK_UNSUCCESSFUL
    )


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "states": args.states,
        "types": args.types,
        "client": args.client,
        "group": args.group,
        "labels": dict(args.labels),
    }


def _backoff(args: argparse.Namespace) -> Backoff | None:
    backoff = Backoff(
        initial=args.backoff_initial,
        multiplier=args.backoff_multiplier,
        maximum=args.backoff_max,
        jitter=args.backoff_jitter,
    )
    return None if backoff == Backoff() else backoff


def _task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords ``create_task`` and ``create_schedule`` share, from the shared flags."""
    has_key_limits = args.key_max_running is not None or args.key_max_per_second is not None
    if has_key_limits and not args.concurrency_key:
        raise UsageError("--key-max-running and --key-max-per-second need --concurrency-key")
    if args.cache_max_age is not None and not args.cache:
        raise UsageError("--cache-max-age needs --cache")
    payload = dict(args.payload or {})
    payload.update((key, parse_param_value(text)) for key, text in args.params)
    return {
        "payload": payload,
        "priority": args.priority,
        "max_attempts": args.max_attempts,
        "backoff": _backoff(args),
        "timeout": args.task_timeout,
        "group": args.group,
        "cache": args.cache,
        "cache_max_age": args.cache_max_age,
        "labels": dict(args.labels),
        "on_failure": args.on_failure,
        "concurrency_key": args.concurrency_key,
        "key_max_running": args.key_max_running,
        "key_max_per_second": args.key_max_per_second,
    }


async def create(ctx: Context, args: argparse.Namespace) -> int:
    if args.wait_timeout is not None and not args.wait:
        raise UsageError("--wait-timeout needs --wait")
    task = await ctx.client.create_task(
        args.type,
        run_at=args.run_at,
        delay=args.delay,
        idempotency_key=args.idempotency_key,
        **_task_options(args),
    )
    if not args.wait:
        ctx.out.show(task, task_detail)
        return ExitCode.OK
    if not ctx.out.json_mode:
        ctx.out.note(f"created {task.id}; waiting for it to end")
    try:
        with ctx.out.waiting(f"waiting for task {task.id} to end"):
            final = await ctx.client.wait_for_task(task.id, timeout=args.wait_timeout)
    except TimeoutError:
        raise DeadlineExceeded(
            f"task {task.id} did not end within {format_duration(args.wait_timeout)}"
        ) from None
    ctx.out.show(final, task_detail)
    return _outcome(final)


async def get(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.get_task(args.id), task_detail)
    return ExitCode.OK


async def explain(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.explain_task(args.id), explain_view)
    return ExitCode.OK


async def list_tasks(ctx: Context, args: argparse.Namespace) -> int:
    """A page of ``--limit`` tasks (fetched in as many calls as needed), or ``--all``."""
    limit = None if args.all else args.limit
    order_by = "created_at asc" if args.oldest_first else ""
    tasks: list[task_pb2.Task] = []
    page_token: str = args.page_token
    revision: int | None = None
    while True:
        wanted = MAX_PAGE_SIZE if limit is None else min(limit - len(tasks), MAX_PAGE_SIZE)
        page = await ctx.client.list_tasks(
            **_filters(args), page_size=wanted, page_token=page_token, order_by=order_by
        )
        # The first page's revision: watching from it misses no change to any listed task.
        revision = page.revision if revision is None else revision
        tasks.extend(page.tasks)
        page_token = page.next_page_token
        if not page_token or (limit is not None and len(tasks) >= limit):
            break
    response = task_service_pb2.ListTasksResponse(
        tasks=tasks, next_page_token=page_token, revision=revision
    )
    ctx.out.show(response, lambda r: task_table(r.tasks))
    if page_token and not ctx.out.json_mode:
        ctx.out.note(f"more tasks: add --page-token {page_token} (or --all)")
    return ExitCode.OK


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    await ctx.client.delete_task(args.id)
    ctx.out.show(empty_pb2.Empty(), lambda _: Text(f"deleted {args.id}"))
    return ExitCode.OK


async def delete_all(ctx: Context, args: argparse.Namespace) -> int:
    filters = _filters(args)
    has_filter = any(filters.values())
    if args.all and has_filter:
        raise UsageError("--all deletes every task; it cannot be combined with filters")
    if not args.all and not has_filter:
        raise UsageError(
            "give a filter (--state, --type, --client, --group, --label), "
            "or --all --yes to delete every task"
        )
    if args.all and not args.yes:
        raise UsageError("--all deletes every task: add --yes to confirm")
    if not args.yes:
        if ctx.confirm is None:
            raise UsageError("refusing to delete without --yes when not at a terminal")
        if not await ctx.confirm("Delete every task matching these filters? [y/N] "):
            ctx.out.say("nothing deleted")
            return ExitCode.OK
    count = await ctx.client.delete_tasks(**filters, confirm_all=args.all)
    response = task_service_pb2.DeleteTasksResponse(deleted_count=count)
    ctx.out.show(response, lambda r: Text(f"deleted {r.deleted_count} task(s)"))
    return ExitCode.OK


async def cancel(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.cancel_task(args.id), task_detail)
    return ExitCode.OK


async def retry(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.retry_task(args.id), task_detail)
    return ExitCode.OK


async def run(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.run_task(args.id), task_detail)
    return ExitCode.OK


async def watch(ctx: Context, args: argparse.Namespace) -> int:
    """Print each change; the exit status says how the task ended, like ``create --wait``."""
    last: task_service_pb2.TaskEvent | None = None
    with ctx.out.waiting(f"watching task {args.id}") as display:
        async for event in ctx.client.watch_task(args.id):
            ctx.out.show_event(event, event_line)
            display.update(f"watching task {args.id}: {_where(event.task)}")
            last = event
    if last is not None and last.type == task_service_pb2.TASK_EVENT_TYPE_DELETED:
        return ExitCode.TASK_UNSUCCESSFUL
    if last is None or last.task.state not in TERMINAL_STATES:
        where = "before any event" if last is None else f"at {state_name(last.task.state)}"
        raise WatchEnded(f"the watch of task {args.id} ended {where}")
    return _outcome(last.task)


def _where(task: task_pb2.Task) -> str:
    """``RUNNING, attempt 2 of 3``: where a watched task is, for the spinner."""
    where = state_name(task.state)
    if task.attempts:
        where += f", attempt {task.attempts} of {task.max_attempts}"
    return where


async def all_task_types(client: AsyncClient) -> list[admin_service_pb2.TaskType]:
    found: list[admin_service_pb2.TaskType] = []
    page_token = ""
    while True:
        page = await client.list_task_types(page_size=MAX_PAGE_SIZE, page_token=page_token)
        found.extend(page.task_types)
        page_token = page.next_page_token
        if not page_token:
            return found


async def task_types(ctx: Context, args: argparse.Namespace) -> int:
    response = admin_service_pb2.ListTaskTypesResponse(task_types=await all_task_types(ctx.client))
    ctx.out.show(response, lambda r: task_type_table(r.task_types))
    return ExitCode.OK


async def pause(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.pause_task_type(args.type), task_type_line)
    return ExitCode.OK


async def resume(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.resume_task_type(args.type), task_type_line)
    return ExitCode.OK


async def limits(ctx: Context, args: argparse.Namespace) -> int:
    """Set one or both limits of a type; the one not given keeps its current value.

    SetTaskTypeLimits replaces both, so the current limits are read first (a change made
    by someone else in between is overwritten, as with any read-then-write by hand).
    """
    if args.max_running is None and args.max_per_second is None:
        raise UsageError("give --max-running, --max-per-second or both (0 removes a limit)")
    max_running, max_per_second = args.max_running, args.max_per_second
    if max_running is None or max_per_second is None:
        current = next(
            (t.limits for t in await all_task_types(ctx.client) if t.name == args.type),
            task_pb2.ConcurrencyLimits(),
        )
        if max_running is None:
            max_running = current.max_running
        if max_per_second is None:
            max_per_second = current.max_per_second
    task_type = await ctx.client.set_task_type_limits(
        args.type, max_running=max_running, max_per_second=max_per_second
    )
    ctx.out.show(task_type, task_type_limits_line)
    return ExitCode.OK


async def workers(ctx: Context, args: argparse.Namespace) -> int:
    found: list[admin_service_pb2.Worker] = []
    page_token = ""
    while True:
        page = await ctx.client.list_workers(page_size=MAX_PAGE_SIZE, page_token=page_token)
        found.extend(page.workers)
        page_token = page.next_page_token
        if not page_token:
            break
    response = admin_service_pb2.ListWorkersResponse(workers=found)
    ctx.out.show(response, lambda r: worker_table(r.workers))
    return ExitCode.OK


async def stats(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.get_stats(), stats_view)
    return ExitCode.OK


async def schedule_create(ctx: Context, args: argparse.Namespace) -> int:
    created = await ctx.client.create_schedule(
        args.cron,
        args.type,
        time_zone=args.time_zone,
        schedule_id=args.schedule_id,
        catch_up=args.catch_up,
        **_task_options(args),
    )
    ctx.out.show(created, schedule_detail)
    return ExitCode.OK


async def schedule_list(ctx: Context, args: argparse.Namespace) -> int:
    found = [s async for s in ctx.client.iter_schedules(page_size=MAX_PAGE_SIZE)]
    response = admin_service_pb2.ListSchedulesResponse(schedules=found)
    ctx.out.show(response, lambda r: schedule_table(r.schedules))
    return ExitCode.OK


async def schedule_get(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.get_schedule(args.id), schedule_detail)
    return ExitCode.OK


async def schedule_delete(ctx: Context, args: argparse.Namespace) -> int:
    await ctx.client.delete_schedule(args.id)
    ctx.out.show(empty_pb2.Empty(), lambda _: Text(f"deleted schedule {args.id}"))
    return ExitCode.OK


async def schedule_pause(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.pause_schedule(args.id), schedule_line)
    return ExitCode.OK


async def schedule_resume(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.show(await ctx.client.resume_schedule(args.id), schedule_line)
    return ExitCode.OK


SCHEDULE_COMMANDS: dict[str, Command] = {
    "create": schedule_create,
    "list": schedule_list,
    "get": schedule_get,
    "delete": schedule_delete,
    "pause": schedule_pause,
    "resume": schedule_resume,
}


async def schedule(ctx: Context, args: argparse.Namespace) -> int:
    return await SCHEDULE_COMMANDS[args.schedule_command](ctx, args)


async def ask(question: str) -> bool:
    """A yes/no question on the terminal, off the event loop."""
    answer = await asyncio.to_thread(input, question)
    return answer.strip().lower() in ("y", "yes")


COMMANDS: dict[str, Command] = {
    "create": create,
    "get": get,
    "list": list_tasks,
    "delete": delete,
    "delete-all": delete_all,
    "cancel": cancel,
    "retry": retry,
    "run": run,
    "watch": watch,
    "explain": explain,
    "types": task_types,
    "pause": pause,
    "resume": resume,
    "limits": limits,
    "workers": workers,
    "stats": stats,
    "schedule": schedule,
}
