"""One run per ``OUTPUT_DIR``: a lock file that names its owner.

Two trainings writing into one folder overwrite each other's checkpoints, ``last_checkpoint``
tag, ``config.yaml`` and metrics without an error, and a later reader can then pair a model with
a config it was not trained with. The first run to start therefore creates
``<OUTPUT_DIR>/meshrecon.lock``, a small JSON record of its pid, host, start time and command; a
second run refuses to start with an error naming them.

Why ``os.open(O_CREAT | O_EXCL)`` and not ``fcntl.flock``: ``flock`` is released by the kernel
when its owner dies, which is convenient, but on network file systems it is either unsupported
(``ENOLCK``/``ENOSYS``), or, on older NFS clients and some FUSE mounts, granted locally only, so
that two machines sharing the folder would both "hold" it and nothing would be said. An exclusive
create is atomic on local file systems and on NFS v3 and later, and works everywhere. Its cost is
that a crashed owner leaves the file behind; the record says who wrote it, so that

* a lock of a process that no longer exists on this host (pid gone, pid reused by another
  program, machine rebooted) is taken over, with a warning;
* a lock written on another host is never taken over: its liveness cannot be checked from here.
  The error says which file to delete once that run is known to be gone.

Within one process the lock is re-entrant (``default_setup`` and ``DefaultTrainer`` both take
it); it is removed when its last holder releases it, at interpreter exit (also after an
exception), and on SIGTERM (a scheduler's preemption: the job may be requeued on another host,
which must not find a lock it cannot judge) unless the program installed its own SIGTERM
handler. Only SIGKILL and crashes of the machine leave it behind. Only the main process of a
distributed job takes it.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["LOCK_FILENAME", "OutputDirLock", "OutputDirLockedError", "acquire_output_dir_lock"]

LOCK_FILENAME = "meshrecon.lock"
logger = logging.getLogger(__name__)

# A lock file is created and then written; a reader may see it empty for that instant. A file that
# stays unreadable for this long was left by a writer that died in between.
_UNREADABLE_GRACE_S = 5.0


class OutputDirLockedError(RuntimeError):
    """Another run holds the ``OUTPUT_DIR`` lock (or its lock file cannot be judged safely)."""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    # Containers on one machine may share a host name but not pids: a pid is only meaningful
    # within its namespace.
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _this_process_record() -> dict[str, Any]:
    stat = _proc_stat(os.getpid())
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
        "boot_id": _boot_id(),
        "pid_namespace": _pid_namespace(),
        "start_ticks": stat[1] if stat else None,
        "token": uuid.uuid4().hex,
    }


def _same_machine(record: dict[str, Any]) -> bool:
    if record.get("host") != socket.gethostname():
        return False
    namespace = record.get("pid_namespace") or ""
    return not namespace or not _pid_namespace() or namespace == _pid_namespace()


def _alive(record: dict[str, Any]) -> tuple[bool, str]:
    """Whether the process of a same-machine record still runs, and if not, why not."""
    boot_id = record.get("boot_id") or ""
    if boot_id and _boot_id() and boot_id != _boot_id():
        return False, "the machine has rebooted since"
    pid = int(record["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"no process {pid} exists"
    except PermissionError:
        pass  # exists, owned by another user
    stat = _proc_stat(pid)
    if stat is not None:
        state, ticks = stat
        if state == "Z":
            return False, f"process {pid} has exited (a zombie)"
        recorded = record.get("start_ticks")
        if recorded is not None and int(recorded) != ticks:
            return False, f"pid {pid} now belongs to another process"
    return True, ""


def _describe(record: dict[str, Any]) -> str:
    return (
        f"pid {record.get('pid')} on host {record.get('host')!r}, started "
        f"{record.get('started', '?')} ({record.get('command') or 'command unknown'})"
    )


@dataclass
class _Held:
    record: dict[str, Any]
    count: int


# Lock files this process holds, by absolute path; guarded by _REGISTRY_LOCK.
_HELD: dict[str, _Held] = {}
_REGISTRY_LOCK = threading.Lock()


class OutputDirLock:
    """A handle on the lock of one output folder; :meth:`release` gives it up (idempotent)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._released = False

    @property
    def owner(self) -> dict[str, Any]:
        """The record written into the lock file (pid, host, started, command, ...)."""
        return dict(_HELD[self.path].record)

    def release(self) -> None:
        """Drop this handle; the file is removed when the process's last handle goes."""
        with _REGISTRY_LOCK:
            if self._released:
                return
            self._released = True
            held = _HELD.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _HELD[self.path]
        _remove_if_ours(self.path, held.record)

    def __enter__(self) -> OutputDirLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_record(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """(parsed record or None, raw text or None when the file is gone)."""
    try:
        with open(path) as f:
            raw = f.read()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError):
        return None, ""
    try:
        record = json.loads(raw)
    except ValueError:
        return None, raw
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None, raw
    return record, raw


def _remove_if_ours(path: str, record: dict[str, Any]) -> None:
    current, _ = _read_record(path)
    if current is None:
        return
    if current.get("token") != record.get("token"):
        logger.warning(
            "%s now belongs to %s, not to this process; leaving it", path, _describe(current)
        )
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _move_stale_aside(path: str, stale_raw: str) -> None:
    """Remove a stale lock file, unless another process replaced it after we read it."""
    aside = f"{path}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)  # atomic: of two processes taking over, one gets the file
    except FileNotFoundError:
        return
    try:
        with open(aside) as f:
            moved = f.read()
    except OSError:
        moved = None
    if moved != stale_raw:
        # A concurrent starter took the stale lock over between our read and our rename: this
        # is its live lock. Put it back (link fails rather than overwrite a newer one).
        try:
            os.link(aside, path)
        except OSError:
            pass
    os.unlink(aside)


def _create(path: str, record: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise
    return True


def acquire_output_dir_lock(output_dir: str, *, attempts: int = 50) -> OutputDirLock:
    """Take the lock of ``output_dir`` (created if needed) for this process.

    Returns:
        A handle; call ``release()`` when the run is over (it is also released at exit).

    Raises:
        OutputDirLockedError: another live run on this host holds the folder, a run on another
            host does (never taken over), or the lock file is unreadable. The message names the
            owner and the file to delete if that run is known to be gone.
    """
    os.makedirs(output_dir, exist_ok=True)
    # One key per folder however it is spelled (relative, through a symlink).
    path = os.path.join(os.path.realpath(output_dir), LOCK_FILENAME)
    with _REGISTRY_LOCK:
        held = _HELD.get(path)
        # A forked child inherits the registry, not the lock: it must not count as a holder.
        if held is not None and held.record.get("pid") == os.getpid():
            held.count += 1
            return OutputDirLock(path)
    mine = _this_process_record()
    first_unreadable: float | None = None
    tries = 0
    while tries < attempts:
        if _create(path, mine):
            with _REGISTRY_LOCK:
                _HELD[path] = _Held(mine, 1)
            _install_sigterm_cleanup()
            logger.info("Locked %s for this run (pid %d)", output_dir, mine["pid"])
            return OutputDirLock(path)
        record, raw = _read_record(path)
        if raw is None:
            tries += 1
            continue  # removed meanwhile: try again
        if record is None:
            first_unreadable = first_unreadable or time.monotonic()
            if time.monotonic() - first_unreadable < _UNREADABLE_GRACE_S:
                time.sleep(0.1)  # being written right now
                continue
            raise OutputDirLockedError(
                f"OUTPUT_DIR {output_dir} has a lock file {path} that cannot be read (contents: "
                f"{raw[:80]!r}). If no other run uses this folder, delete that file and start "
                "again."
            )
        if not _same_machine(record):
            raise OutputDirLockedError(
                f"OUTPUT_DIR {output_dir} is in use by {_describe(record)}; its lock file is "
                f"{path}. A run on another host is never taken over, since whether it still "
                "runs cannot be checked from here: give this run another OUTPUT_DIR, or, once "
                f"that run is known to be gone, delete {path} and start again."
            )
        alive, why = _alive(record)
        if alive:
            raise OutputDirLockedError(
                f"OUTPUT_DIR {output_dir} is in use by {_describe(record)}. Two runs in one "
                "folder would overwrite each other's checkpoints, config.yaml and metrics: "
                "wait for it to finish, stop it, or give this run another OUTPUT_DIR "
                f"(e.g. OUTPUT_DIR {os.path.join(output_dir, 'run2')}). Lock file: {path}"
            )
        logger.warning(
            "Taking over the lock of OUTPUT_DIR %s from %s: %s (a run that ended without "
            "releasing it, e.g. killed)",
            output_dir,
            _describe(record),
            why,
        )
        _move_stale_aside(path, raw)
        tries += 1
    raise OutputDirLockedError(
        f"Could not take the lock {path} of OUTPUT_DIR {output_dir} in {attempts} attempts: "
        "other runs keep starting in this folder"
    )


def _release_all_at_exit(blocking: bool = True) -> None:
    if not _REGISTRY_LOCK.acquire(blocking=blocking):
        return  # interrupted inside acquire/release itself: leave it (a stale lock, taken over)
    try:
        items = list(_HELD.items())
        _HELD.clear()
    finally:
        _REGISTRY_LOCK.release()
    for path, held in items:
        # A forked child (e.g. a data loader worker) inherits the registry but not the lock.
        if held.record.get("pid") == os.getpid():
            _remove_if_ours(path, held.record)


def _on_sigterm(signum: int, frame: Any) -> None:
    _release_all_at_exit(blocking=False)
    # Then die of the signal as the process would have without this handler.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_sigterm_installed = False


def _install_sigterm_cleanup() -> None:
    global _sigterm_installed
    if _sigterm_installed:
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the program handles SIGTERM itself (and exits through atexit, or not)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread; no SIGTERM here
        return
    _sigterm_installed = True


atexit.register(_release_all_at_exit)
