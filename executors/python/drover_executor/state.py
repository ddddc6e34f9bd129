"""Runs kept on disk, so a restarted executor still reports them.

With --state-dir, each executor id gets its own directory below it, locked
while the executor runs, and every run the executor has not yet forgotten is
a small JSON file there, named after its flow run id.  A file is written atomically
(temporary file, fsync, rename) on each change and removed once the
supervisor acknowledged the run's EXITED.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any, Callable, Dict, Iterator

from .codec import ProtocolError, RunEntry, _check_inventory

_KEYS = {"flow_run_id": str, "identifier": str, "exited": bool, "code": int, "error": str,
         "started_acked": bool}


class StateDir:
    """The run files of one executor id; raises ValueError when another process holds it."""

    def __init__(self, path: str):
        self.path = path
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            self._lock_fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ValueError(f"cannot use state directory {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise ValueError(f"state directory {path} is in use by another executor with the "
                             f"same id; give each executor its own --id") from None

    def close(self, remove: bool = False) -> None:
        """Release the lock; with remove, also delete the lock file and the directory.

        rmdir fails harmlessly when a run file is still there.
        """
        if remove:
            for path in (os.path.join(self.path, "lock"), self.path):
                try:
                    os.rmdir(path) if path == self.path else os.unlink(path)
                except OSError:
                    pass
        os.close(self._lock_fd)

    def _file(self, flow_run_id: str) -> str:
        return os.path.join(self.path, flow_run_id + ".json")

    def save(self, flow_run_id: str, state: Dict[str, Any]) -> None:
        final = self._file(flow_run_id)
        tmp = final + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def run_path(self, flow_run_id: str, suffix: str) -> str:
        """Return the path of a file of the run, removed with the run's record."""
        return os.path.join(self.path, flow_run_id + suffix)

    def remove(self, flow_run_id: str) -> None:
        """Remove the run's record and every other file named after the run."""
        remove_run_files(self.path, flow_run_id)

    def load(self, warn: Callable[..., None]) -> Iterator[Dict[str, Any]]:
        """Yield each valid run file; report and skip files that are not."""
        for name in sorted(os.listdir(self.path)):
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.path, name)
            try:
                with open(path, encoding="utf-8") as f:
                    state = json.load(f)
                _validate(state, name)
            except (OSError, ValueError) as exc:
                warn("state_file_skipped", path=path, error=exc)
                continue
            yield state


def _validate(state: Any, name: str) -> None:
    if not isinstance(state, dict):
        raise ValueError("not a JSON object")
    for key, kind in _KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{key}: expected {kind.__name__}, got {value!r}")
    if name != state["flow_run_id"] + ".json":
        raise ValueError(f"flow_run_id {state['flow_run_id']!r} does not match the file name")
    try:
        _check_inventory("run", [RunEntry(state["flow_run_id"], state["identifier"],
                                          state["exited"], state["code"])])
    except ProtocolError as exc:
        raise ValueError(exc.reason) from None


def remove_run_files(directory: str, flow_run_id: str) -> None:
    """Remove "<flow run id>.json" and every "<flow run id>.<suffix>" file in directory."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(flow_run_id + "."):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
