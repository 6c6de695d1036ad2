"""Run code cells in a Jupyter kernel with a hard time limit: the grader's executor.

:class:`Kernel` starts a ``python3`` kernel in a given folder and runs one cell at a time with
:meth:`Kernel.run`. A cell that runs past its time limit is interrupted (SIGINT, as the notebook's stop button
does); if it is still running ``grace`` seconds later (it ignores or catches the interrupt), the kernel is
killed. A kernel that dies (``os._exit``, a segfault, out of memory) is noticed within a fraction of a second.
So no cell can hold the grader longer than its time limit plus the grace.

This runs the learner's code with the grader's permissions: it is not a sandbox.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from time import monotonic

_POLL = 0.1  # seconds between checks that the kernel is alive and the deadline not passed


@dataclass
class CellRun:
    """What one cell did: its error (if any), its stdout and its ``outcome``: "ok" or "error" (it finished),
    "interrupted" (it timed out), "killed" (it ignored the interrupt) or "dead" (the kernel died under it)."""

    outcome: str
    ename: str = ""
    evalue: str = ""
    stdout: str = ""


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
        self.env = dict(os.environ if env is None else env)
        self.startup = positive_seconds("startup", startup)
        self.grace = positive_seconds("grace", grace)
        self.alive = False
        self._km = None
        self._kc = None

    def start(self) -> None:
        from jupyter_client.manager import KernelManager

        self._km = KernelManager(kernel_name="python3")
        try:
            # --log-level=ERROR: no kernel start-up warnings (e.g. about the TCP transport) in the report
            self._km.start_kernel(cwd=str(self.cwd), env=self.env, extra_arguments=["--log-level=ERROR"])
            self._kc = self._km.client()
            self._kc.start_channels()
            self._kc.wait_for_ready(timeout=self.startup)
        except BaseException:
            self.close()
            raise
        self.alive = True

    def close(self) -> None:
        """Stop the channels and kill the kernel (it is not asked to save anything)."""
        self.alive = False
        if self._kc is not None:
            with suppress(Exception):  # already gone
                self._kc.stop_channels()
            self._kc = None
        if self._km is not None:
            with suppress(Exception):  # already gone
                if self._km.has_kernel:
                    self._km.shutdown_kernel(now=True)
            self._km = None

    def run(self, code: str, timeout: float, store_history: bool = True) -> CellRun:
        """Run ``code`` as one cell, for at most ``timeout`` seconds (plus the grace if it must be killed)."""
        if not self.alive or self._kc is None or self._km is None:
            raise RuntimeError("the kernel is not running (it died or was killed); start a new Kernel")
        deadline = monotonic() + positive_seconds("timeout", timeout)
        msg_id = self._kc.execute(code, store_history=store_history, allow_stdin=False, stop_on_error=False)
        interrupted = False
        stdout: list[str] = []
        ename = evalue = ""
        while True:
            now = monotonic()
            if now >= deadline:
                if interrupted:  # it ignored the interrupt for `grace` seconds
                    self.close()
                    return CellRun("killed", ename, evalue, "".join(stdout))
                self._km.interrupt_kernel()
                interrupted = True
                deadline = now + self.grace
            try:
                msg = self._kc.get_iopub_msg(timeout=min(_POLL, max(deadline - now, 0.001)))
            except Empty:
                if not self._km.is_alive():
                    self.alive = False
                    return CellRun("dead", ename, evalue, "".join(stdout))
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                stdout.append(content.get("text", ""))
            elif kind == "error":
                ename, evalue = content.get("ename", ""), content.get("evalue", "")
            elif kind == "status" and content.get("execution_state") == "idle":
                outcome = "interrupted" if interrupted else "error" if ename else "ok"
                return CellRun(outcome, ename, evalue, "".join(stdout))
