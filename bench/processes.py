"""Starting and stopping the processes a benchmark run needs (servers, workers)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Process:
    """A child process with its output in ``<log_dir>/<name>.log``."""

    def __init__(
        self, name: str, args: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                start_new_session=True,  # its own process group: stopped with its children
            )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def executable(name: str) -> str:
    """A console script of this interpreter's environment (huey_consumer, celery, ...)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed: pip install -e '.[bench]'")
    return found


def redis_server_binary() -> str:
    """Debian's redis-server, installed on first use (the bench needs nothing else)."""
    found = shutil.which("redis-server")
    if found:
        return found
    print("redis-server is missing: installing Debian's package (apt-get)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], check=True)
    found = shutil.which("redis-server")
    if not found:
        raise FileNotFoundError("redis-server: apt-get install redis-server did not provide it")
    return found


class RedisServer:
    """An in-memory Redis on a loopback port (no persistence: the peers' usual setup)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = Process(
            "redis",
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(log_dir),
            ],
            log_dir,
        )  # fmt: skip
        wait_until(self._answers, 10, "redis-server answering")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def flush(self) -> None:
        """Empty every database (between runs)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            answer = conn.recv(16)
        if not answer.startswith(b"+OK"):
            raise RuntimeError(f"redis FLUSHALL answered {answer!r}")

    def stop(self) -> None:
        self.process.stop()
