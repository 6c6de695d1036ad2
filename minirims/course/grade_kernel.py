"""Run code cells in a Jupyter kernel with a hard time limit: the grader's executor.

:class:`Kernel` starts a ``python3`` kernel in a given folder and runs one cell at a time with
:meth:`Kernel.run`. A cell that runs past its time limit is interrupted (SIGINT, as the notebook's stop button
does); if it is still running ``grace`` seconds later (it ignores or catches the interrupt), the kernel is
killed. A kernel that dies (``os._exit``, a segfault, out of memory) is noticed within a fraction of a second.
So no cell can hold the grader longer than its time limit plus the grace.

What the grader keeps of a cell is bounded: its error's name and value (cut at :data:`TEXT_LIMIT` characters)
and at most :data:`STREAM_LIMIT` characters of its stdout (or only the lines that start with a given prefix),
so a cell that prints hundreds of MB costs the grader one message at a time, never their sum.

:meth:`Kernel.close` ends every process the kernel started, not only the kernel: the kernel runs in a session
of its own (its process group is killed); its descendants, recorded while cells run, are killed even if they
left that group (``setsid``, ``start_new_session=True``); and any process still carrying the kernel's token in
its environment (:data:`TOKEN_VARIABLE`, inherited by everything the kernel starts, even after a double fork
whose middle process exited) is killed too. A process that both leaves the session and clears its
environment before the grader records it can escape (see the README's teacher section).

This runs the learner's code with the grader's permissions: it is not a sandbox.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from time import monotonic

try:  # IPython (so ipykernel) requires psutil on Linux, macOS and Windows; without it: the group only
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

_POLL = 0.1  # seconds between checks that the kernel is alive and the deadline not passed
_TRACK = 0.5  # seconds between two records of the kernel's descendants while a cell runs
STREAM_LIMIT = 64 * 2**10  #: characters of a cell's stdout the grader keeps at most
TEXT_LIMIT = 4 * 2**10  #: characters of a cell's error name and value the grader keeps at most
TOKEN_VARIABLE = "MINIRIMS_GRADE_KERNEL"  #: environment variable that marks the kernel and what it starts


@dataclass
class CellRun:
    """What one cell did: its error (if any), what was kept of its stdout (``truncated``: some was dropped)
    and its ``outcome``: "ok" or "error" (it finished), "interrupted" (it timed out), "killed" (it ignored
    the interrupt) or "dead" (the kernel died under it)."""

    outcome: str
    ename: str = ""
    evalue: str = ""
    stdout: str = ""
    truncated: bool = False


class _Stdout:
    """A cell's stdout as the grader keeps it: the first ``limit`` characters, or (``prefix`` given) only the
    complete lines that start with ``prefix``, ``limit`` characters in all."""

    def __init__(self, limit: int, prefix: str | None) -> None:
        self.limit, self.prefix = limit, prefix
        self.kept: list[str] = []
        self.size = 0
        self.truncated = False
        self._line = ""  # the unfinished last line (prefix mode), at most len(prefix) + limit characters

    def _keep(self, text: str) -> None:
        room = self.limit - self.size
        if len(text) > room:
            text, self.truncated = text[: max(room, 0)], True
        self.kept.append(text)
        self.size += len(text)

    def write(self, text: str) -> None:
        if self.prefix is None:
            self._keep(text)
            return
        lines = (self._line + text).split("\n")
        self._line = lines.pop()
        for line in lines:
            if line.startswith(self.prefix):
                self._keep(line + "\n")
        if len(self._line) > len(self.prefix) + self.limit:  # a long line: kept whole only up to the limit
            self.truncated = self.truncated or self._line.startswith(self.prefix)
            self._line = self._line[: len(self.prefix) + self.limit]

    def text(self) -> str:
        if self.prefix is not None and self._line.startswith(self.prefix):
            self._keep(self._line)
            self._line = ""
        return "".join(self.kept)


def _cut(text: object) -> str:
    text = str(text)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def positive_seconds(name: str, value: float) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a positive, finite number of seconds, got {value!r}")
    return float(value)


class Kernel:
    """A ``python3`` kernel running in ``cwd`` with environment ``env``: :meth:`start` it, :meth:`close` it.

    ``startup`` bounds the kernel's start (seconds); ``grace`` is how long an interrupted cell may take to
    stop before the kernel is killed. After a kill or a death the kernel is gone: :attr:`alive` is False.
    """

    def __init__(
        self,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        startup: float = 120.0,
        grace: float = 5.0,
    ) -> None:
        self.cwd = Path(cwd)
        if not self.cwd.is_dir():
            raise ValueError(f"cwd: expected an existing folder, got {str(cwd)!r}")
        self.token = secrets.token_hex(8)
        self.env = {**(os.environ if env is None else env), TOKEN_VARIABLE: self.token}
        self.startup = positive_seconds("startup", startup)
        self.grace = positive_seconds("grace", grace)
        self.alive = False
        self._km = None
        self._kc = None
        self._pid: int | None = None
        self._pgid: int | None = None
        self._seen: dict[int, object] = {}  # pid -> psutil.Process: the kernel's descendants seen so far
        self._tracked = 0.0

    def start(self) -> None:
        from jupyter_client.manager import KernelManager

        self._km = KernelManager(kernel_name="python3")
        try:
            # --log-level=ERROR: no kernel start-up warnings (e.g. about the TCP transport) in the report
            self._km.start_kernel(cwd=str(self.cwd), env=self.env, extra_arguments=["--log-level=ERROR"])
            self._kc = self._km.client()
            self._kc.start_channels()
            provisioner = getattr(self._km, "provisioner", None)
            self._pid = getattr(provisioner, "pid", None)
            self._pgid = getattr(provisioner, "pgid", None)
            self._kc.wait_for_ready(timeout=self.startup)
        except BaseException:
            self.close()
            raise
        self.alive = True

    def _track(self) -> None:
        """Record the kernel's descendants now (so that one that leaves its session is still known)."""
        self._tracked = monotonic()
        if psutil is None or self._pid is None:
            return
        with suppress(psutil.Error):
            for child in psutil.Process(self._pid).children(recursive=True):
                self._seen.setdefault(child.pid, child)

    def _marked(self) -> list[object]:
        """This user's processes whose environment carries this kernel's token."""
        if psutil is None:
            return []
        found = []
        me = os.getuid() if hasattr(os, "getuid") else None
        for proc in psutil.process_iter(["uids"]):
            with suppress(psutil.Error):
                if proc.pid == os.getpid() or (me is not None and proc.info["uids"].real != me):
                    continue
                if proc.environ().get(TOKEN_VARIABLE) == self.token:
                    found.append(proc)
        return found

    def close(self) -> None:
        """Stop the channels, kill the kernel (it is not asked to save anything) and every process it started:
        its process group, the descendants recorded while cells ran, and any process carrying its token."""
        self.alive = False
        self._track()
        if self._kc is not None:
            with suppress(Exception):  # already gone
                self._kc.stop_channels()
            self._kc = None
        if self._km is not None:
            with suppress(Exception):  # already gone
                if self._km.has_kernel:
                    self._km.shutdown_kernel(now=True)
            self._km = None
        for _ in range(5):  # again, for what forked while the others were killed
            if self._pgid is not None and hasattr(os, "killpg"):
                with suppress(OSError):  # the group is empty: all gone
                    os.killpg(self._pgid, signal.SIGKILL)
            survivors = [p for p in self._seen.values() if _running(p)] + self._marked()
            if not survivors:
                break
            for proc in survivors:
                with suppress(Exception):  # gone meanwhile
                    proc.kill()
            if psutil is not None:
                psutil.wait_procs(survivors, timeout=1.0)
        self._seen.clear()

    def run(
        self,
        code: str,
        timeout: float,
        store_history: bool = True,
        keep: str | None = None,
        limit: int = STREAM_LIMIT,
    ) -> CellRun:
        """Run ``code`` as one cell, for at most ``timeout`` seconds (plus the grace if it must be killed).

        Of its stdout, the first ``limit`` characters are kept; with ``keep``, only the lines that start with
        ``keep`` (``limit`` characters in all).
        """
        if not self.alive or self._kc is None or self._km is None:
            raise RuntimeError("the kernel is not running (it died or was killed); start a new Kernel")
        deadline = monotonic() + positive_seconds("timeout", timeout)
        msg_id = self._kc.execute(code, store_history=store_history, allow_stdin=False, stop_on_error=False)
        interrupted = False
        stdout = _Stdout(limit, keep)
        ename = evalue = ""

        def result(outcome: str) -> CellRun:
            return CellRun(outcome, ename, evalue, stdout.text(), stdout.truncated)

        while True:
            now = monotonic()
            if now - self._tracked >= _TRACK:
                self._track()
            if now >= deadline:
                if interrupted:  # it ignored the interrupt for `grace` seconds
                    self.close()
                    return result("killed")
                self._km.interrupt_kernel()
                interrupted = True
                deadline = now + self.grace
            try:
                msg = self._kc.get_iopub_msg(timeout=min(_POLL, max(deadline - now, 0.001)))
            except Empty:
                if not self._km.is_alive():
                    self.alive = False
                    return result("dead")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                stdout.write(str(content.get("text", "")))
            elif kind == "error":
                ename, evalue = _cut(content.get("ename", "")), _cut(content.get("evalue", ""))
            elif kind == "status" and content.get("execution_state") == "idle":
                self._track()
                return result("interrupted" if interrupted else "error" if ename else "ok")
            del msg, content  # a huge message is not kept while waiting for the next


def _running(proc: object) -> bool:
    """Whether ``proc`` (a psutil.Process) still runs (a zombie does not: it is only waiting to be reaped)."""
    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE  # type: ignore[attr-defined]
    except Exception:  # psutil.Error: gone
        return False
