"""Logging setup: console output from the main process, one log file per process."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections import Counter

from iopath.common.file_io import PathManager as _PathManagerCls

__all__ = ["log_first_n", "setup_logger"]

_PATH_MANAGER = _PathManagerCls()
_LOG_COUNTER: Counter = Counter()

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"


@functools.lru_cache  # calling twice with the same arguments must not duplicate handlers
def setup_logger(
    output: str | None = None,
    distributed_rank: int = 0,
    *,
    name: str = "meshrecon",
    level: int = logging.DEBUG,
) -> logging.Logger:
    """Configure and return the logger ``name``.

    Rank 0 logs INFO and above to stdout; every rank logs DEBUG and above to a file when
    ``output`` is given.

    Args:
        output: a file name ending in ``.txt`` or ``.log``, or a directory (the log is then
            ``<output>/log.txt``); ranks other than 0 append ``.rank<r>`` to the file name.
        distributed_rank: the global rank of this process.
        name: the logger's name; ``"meshrecon"`` covers every module of the package.
        level: the logger's own level.
    """
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(_FORMAT, datefmt=_DATE_FORMAT)

    if distributed_rank == 0:
        console = logging.StreamHandler(stream=sys.stdout)
        console.setLevel(logging.INFO)
        console.setFormatter(formatter)
        logger.addHandler(console)

    if output is not None:
        if output.endswith((".txt", ".log")):
            filename = output
        else:
            filename = os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        _PATH_MANAGER.mkdirs(os.path.dirname(filename) or ".")
        file_handler = logging.StreamHandler(_cached_log_stream(filename))
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


@functools.cache
def _cached_log_stream(filename: str):
    # One open stream per file, shared by every logger that writes there.
    return _PATH_MANAGER.open(filename, "a", buffering=1)


def log_first_n(level: int, msg: str, n: int = 1, *, name: str = "meshrecon", key: str = "msg"):
    """Log ``msg`` only the first ``n`` times it is seen (by message, or by caller with key)."""
    if key == "caller":
        frame = sys._getframe(1)
        counter_key: tuple = (frame.f_code.co_filename, frame.f_lineno)
    else:
        counter_key = (msg,)
    _LOG_COUNTER[counter_key] += 1
    if _LOG_COUNTER[counter_key] <= n:
        logging.getLogger(name).log(level, msg)
