"""The runs an executor holds, as the SDK and the hooks see them."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from .codec import RunEntry


class RunLost(Exception):
    """Raised by poll() when a run's exit status can no longer be known.

    The SDK reports the run as exited with the exception text as the error.
    """


class Run:
    """A flow run this executor took.

    ``handle`` belongs to the executor: start() or recover() may return it,
    poll() and kill() read it.  ``config`` is the checked job configuration.
    """

    def __init__(self, flow_run_id: str, config: Optional[Dict[str, Any]] = None):
        self.flow_run_id = flow_run_id
        self.config = config or {}
        self.identifier = ""
        self.handle: Any = None
        self.exited = False
        self.code = 0
        self.error = ""
        self.started_acked = False
        self.exited_acked = False
        self.killing = False

    def entry(self) -> RunEntry:
        return RunEntry(self.flow_run_id, self.identifier, self.exited, self.code)

    def to_state(self) -> Dict[str, Any]:
        return {"flow_run_id": self.flow_run_id, "identifier": self.identifier,
                "exited": self.exited, "code": self.code, "error": self.error,
                "started_acked": self.started_acked}

    def __repr__(self) -> str:
        return f"Run({self.flow_run_id}, identifier={self.identifier!r}, exited={self.exited})"


class Timer:
    """A callback scheduled with Executor.call_later(); cancel() stops it."""

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

