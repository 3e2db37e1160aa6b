"""Dispatcher: hands due tasks to connected workers and takes their results.

Dispatch runs in rounds, one at a time per scheduler process: a round claims work for
every session with free credit in one store call (so one transaction) and pushes each
session its leases. A round starts the moment something may have changed (:meth:`wake`),
and once more after the one in flight if that happens meanwhile:

- a create of work due now — before it is written, so the claim joins its transaction;
- a worker's results, which give back credit — the claim joins the results' transaction;
- credit granted alone, a local commit (a retry, a task back in the queue);
- the next queued task becoming due (a timer, not a poll);
- another scheduler process committing to the shared database (a cheap
  ``PRAGMA data_version`` check every ``poll_interval``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from ..domain.clock import Clock
from ..domain.model import (
    AttemptEnd,
    AttemptOutcome,
    EndedAttempt,
    LeaseRef,
    Micros,
    ProgressUpdate,
    WorkerRecord,
)
from ..store.base import TaskStore
from ..tracing import SchedulerTracing
from .coalescing import Coalescer
from .metrics import SchedulerMetrics
from .sessions import SendAcks, SendCancel, SendDrain, SendLeases, WorkerSession

log = logging.getLogger(__name__)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class Dispatcher:
    def __init__(
        self,
        store: TaskStore,
        clock: Clock,
        metrics: SchedulerMetrics,
        *,
        scheduler_id: str,
        lease_ttl: Micros,
        poll_interval: float,
        tracing: SchedulerTracing | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._tracing = tracing  # None when tracing is off: no span per lease
        self.scheduler_id = scheduler_id
        self.lease_ttl = lease_ttl
        self._poll_interval = poll_interval
        self._sessions: dict[str, WorkerSession] = {}
        self._stopping = False
        self._round: asyncio.Task[None] | None = None
        self._again = False
        self._due_timer: asyncio.TimerHandle | None = None
        self._results: Coalescer[tuple[WorkerSession, Sequence[AttemptEnd]]] = Coalescer(
            "results", self._apply_results
        )
        self._beats = Coalescer("heartbeats", self._apply_heartbeats)
        #: When each lease held by a worker of this process was sent (monotonic), for the
        #: run-duration metric; forgotten wherever a session stops holding the lease.
        self._sent_at: dict[str, Micros] = {}

    # -- sessions ----------------------------------------------------------------------------

    @property
    def sessions(self) -> Sequence[WorkerSession]:
        return list(self._sessions.values())

    def served_types(self) -> set[str]:
        return {t for s in self._sessions.values() for t in s.types}

    async def attach(self, session: WorkerSession, record: WorkerRecord) -> None:
        await self._store.register_task_types(sorted(session.types))
        await self._store.add_worker(record)
        self._sessions[session.session_id] = session
        self._metrics.connected_workers.set(len(self._sessions))
        log.info(
            "worker connected",
            extra={
                "worker_id": session.worker_id,
                "session_id": session.session_id,
                "slots": session.slots,
                "types": ",".join(sorted(session.types)),
            },
        )
        self.wake()

    async def detach(self, session: WorkerSession) -> None:
        """The stream ended: every lease it still holds goes back to the queue. Once per
        session, whoever notices first (see ``WorkerServicer.Connect``)."""
        if session.detached:
            return
        session.detached = True
        session.close()
        self._sessions.pop(session.session_id, None)
        self._metrics.connected_workers.set(len(self._sessions))
        self._forget_sent(session.held)
        # A worker that drained and closed its stream cleanly hands back what it never
        # started (leases still in flight when it closed): those attempts do not count.
        ended = await self._store.release_session(
            session.session_id, returned=session.draining and session.left_cleanly
        )
        self._metrics.attempts_ended(ended)
        # Leases a draining worker handed back (RETURNED) were not lost.
        lost = [e for e in ended if e.accepted and e.outcome == AttemptOutcome.WORKER_LOST]
        if lost:
            self._metrics.lease_expiries.labels(reason="worker_lost").inc(len(lost))
        for item in lost:
            log.warning(
                "lease taken back from a lost worker",
                extra={
                    "task_id": item.task_id,
                    "lease_id": item.lease_id,
                    "worker_id": session.worker_id,
                },
            )
        log.info(
            "worker disconnected",
            extra={"worker_id": session.worker_id, "session_id": session.session_id},
        )
        if ended:
            self.wake()

    # -- messages from workers ------------------------------------------------------------------

    def results(
        self, session: WorkerSession, ends: Sequence[AttemptEnd], credit: int
    ) -> asyncio.Future[None]:
        """Take back a worker's credit, apply its results and acknowledge them. Every
        stream's results wait for one store call together; the future says when these are
        done.

        The credit counts at once, before the results are written: the worker's slots are
        already free, and the claim for them then joins the transaction that writes the
        results (claims run last in it), so a busy worker's next tasks leave one commit
        after its results arrive, not two. Should that write fail, the results are lost
        (their leases expire and the tasks run again, at-least-once) but the slots are
        free all the same.
        """
        self.grant(session, credit)
        if not ends:
            return _done()
        return self._results.add((session, ends))

    async def _apply_results(
        self, batch: Sequence[tuple[WorkerSession, Sequence[AttemptEnd]]]
    ) -> None:
        ends = [end for _, session_ends in batch for end in session_ends]
        ended = await self._store.end_attempts(ends)
        self._metrics.attempts_ended(ended)
        now = self._clock.monotonic()
        position = 0
        for session, session_ends in batch:
            mine = ended[position : position + len(session_ends)]
            position += len(session_ends)
            for item in mine:
                session.held.discard(item.lease_id)
                sent_at = self._sent_at.pop(item.lease_id, None)
                if item.accepted:
                    if sent_at is not None:
                        run = max(0, now - sent_at) / 1e6
                        self._metrics.run_duration.labels(type=item.type).observe(run)
                else:
                    self._metrics.results_refused.inc()
                    log.warning(
                        "result refused: stale lease",
                        extra={"lease_id": item.lease_id, "worker_id": session.worker_id},
                    )
            if mine:
                session.send(SendAcks(mine))

    async def progress(self, updates: Sequence[ProgressUpdate]) -> None:
        await self._store.report_progress(updates)

    def grant(self, session: WorkerSession, credit: int) -> None:
        if credit > 0:
            session.credit = min(session.credit + credit, session.slots)
            self.wake()

    def heartbeat(self, session: WorkerSession, lease_ids: Sequence[str]) -> asyncio.Future[None]:
        """Extend a worker's leases; tell it which are no longer its own. Every stream's
        heartbeats wait for one store call together (a fleet often beats in step)."""
        return self._beats.add((session, lease_ids))

    async def _apply_heartbeats(self, beats: Sequence[tuple[WorkerSession, Sequence[str]]]) -> None:
        stale = await self._store.heartbeats(
            [(session.session_id, lease_ids) for session, lease_ids in beats], self.lease_ttl
        )
        for (session, _), gone in zip(beats, stale, strict=True):
            if gone:
                session.held.difference_update(gone)
                self._forget_sent(gone)
                session.send(SendCancel(gone, "lease is no longer current"))

    async def worker_draining(self, session: WorkerSession) -> None:
        session.draining = True
        await self._store.set_worker_draining(session.session_id)

    # -- cancels from the engine -------------------------------------------------------------------

    def cancel_leases(self, leases: Iterable[LeaseRef | EndedAttempt], reason: str) -> None:
        """Tell the workers holding these leases to stop (those connected to this process).

        A worker connected to another scheduler process learns it at its next heartbeat,
        which answers ``cancel`` for every lease that is no longer current.
        """
        by_session: dict[str, list[str]] = {}
        for lease in leases:
            by_session.setdefault(lease.session_id, []).append(lease.lease_id)
        for session_id, lease_ids in by_session.items():
            session = self._sessions.get(session_id)
            if session is not None:
                session.held.difference_update(lease_ids)
                self._forget_sent(lease_ids)
                session.send(SendCancel(lease_ids, reason))

    def _forget_sent(self, lease_ids: Iterable[str]) -> None:
        for lease_id in lease_ids:
            self._sent_at.pop(lease_id, None)

    # -- the loop ----------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something may have changed: run a dispatch round now (or once more, after the
        one in flight).

        The round starts in this very tick rather than from a loop waiting on an event:
        woken by a worker's results, its claim then reaches the writer alongside those
        results and both land in one transaction (see :meth:`results`).
        """
        if self._stopping:
            return
        if self._round is not None and not self._round.done():
            self._again = True
            return
        self._round = asyncio.get_running_loop().create_task(self._rounds(), name="dispatch")

    async def run(self) -> None:
        """Watch for other scheduler processes' commits (a cheap ``PRAGMA data_version``
        every ``poll_interval``); local changes, credit and due times wake rounds
        directly. Cancelled at shutdown, it stops the rounds and the due timer."""
        try:
            version = await self._store.data_version()
            self.wake()
            while not self._stopping:
                await asyncio.sleep(self._poll_interval)  # a poll of other processes
                now_version = await self._store.data_version()
                if now_version != version:
                    version = now_version
                    self.wake()
        finally:
            self._stopping = True
            self._set_due_timer(None)
            if self._round is not None:
                self._round.cancel()

    async def _rounds(self) -> None:
        while True:
            self._again = False
            try:
                next_due = await self._dispatch()
            except Exception:
                log.exception("dispatch round failed; retrying")
                await asyncio.sleep(self._poll_interval)
                self._again = True
                next_due = None
            if self._stopping:
                return
            self._set_due_timer(next_due)
            if not self._again:
                return

    def _set_due_timer(self, due: Micros | None) -> None:
        """Wake when the next queued task becomes due: a timer, not a poll."""
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        if due is not None and not self._stopping:
            delay = max(0.0, (due - self._clock.now()) / 1e6)
            self._due_timer = asyncio.get_running_loop().call_later(delay, self.wake)

    async def _dispatch(self) -> Micros | None:
        """One claim for every session that wants work, in one store call.

        One round is enough: a session left with credit afterwards got fewer tasks than it
        asked for, so nothing due remains for its types until something changes (and every
        change wakes the loop). Answers when the next queued task becomes due, if anyone is
        still waiting for work.
        """
        wanting = sorted(
            (s for s in self._sessions.values() if s.wants_work),
            key=lambda s: s.credit,
            reverse=True,  # the freest worker picks first: work spreads by free slots
        )
        if not wanting:
            return None
        requests = [s.claim_request(self.lease_ttl) for s in wanting]
        outcome = await self._store.claim(requests)
        for session, leases in zip(wanting, outcome.leases, strict=True):
            if not leases:
                continue
            if session.closed.is_set():
                # Lost between claim and send: its release (detach) may already have run,
                # so hand these back now rather than at lease expiry.
                self._metrics.attempts_ended(await self._store.release_session(session.session_id))
                continue
            session.credit -= len(leases)
            session.held.update(lease.lease_id for lease in leases)
            session.send(SendLeases(leases))
            if self._tracing is not None:
                self._tracing.leases_sent(session.worker_id, leases, self._clock.now())
            self._metrics.leases_sent(leases, self._clock.now())
            sent_at = self._clock.monotonic()
            for lease in leases:
                self._sent_at[lease.lease_id] = sent_at
                log.debug(
                    "lease granted",
                    extra={
                        "task_id": lease.task_id,
                        "lease_id": lease.lease_id,
                        "worker_id": session.worker_id,
                    },
                )
        if any(s.wants_work for s in wanting):
            # Wake for the next task to become due, or for a rate window to free up.
            due = await self._store.next_due_at()
            times = [t for t in (due, outcome.retry_at) if t is not None]
            return min(times) if times else None
        return None

    # -- shutdown ----------------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Ask every worker to finish or return what it holds, waiting up to ``grace``."""
        self._stopping = True
        self._set_due_timer(None)
        for session in self._sessions.values():
            session.draining = True
            session.send(SendDrain(int(grace * 1e6), "scheduler shutting down"))
        waits = [s.closed.wait() for s in self._sessions.values()]
        if waits:
            _done, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=grace
            )
            for future in pending:
                future.cancel()
