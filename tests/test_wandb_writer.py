"""WandbWriter: scalars, config and evaluation results reach an offline W&B run.

The tests that run W&B are skipped when the optional package ``wandb`` is absent. The run is
written in offline mode into a temporary folder and read back from its ``run-<id>.wandb`` file
(LevelDB log records of W&B's ``Record`` protobuf), so the test sees what W&B would upload.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from meshrecon.config import get_cfg
from meshrecon.engine.defaults import default_writers
from meshrecon.utils.events import EventStorage, WandbWriter

_BLOCK = 32768
_HEADER = 7  # ":W&B", a 2-byte magic, a version byte


def _pb():
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2


def _read_records(path: Path) -> list:
    """Parse a ``.wandb`` file: LevelDB log format (32 KiB blocks of crc, length, type)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    records, chunks, pos = [], [], _HEADER
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:  # zero padding at a block's end
            continue
        chunks.append(payload)
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = _pb().Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def _finished_records(path: Path, timeout: float = 120.0) -> list:
    """The run's records once its ``exit`` record is in the file.

    ``run.finish()`` returns while W&B's service process may still be writing the file.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = _read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.2)


def _history_and_config(root: Path) -> tuple[dict[int, dict], dict]:
    runs = list(root.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    history: dict[int, dict] = {}
    config: dict = {}
    for record in _finished_records(runs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {
                (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                for i in record.history.item
            }
            step = int(items.pop("_step"))
            history[step] = {k: v for k, v in items.items() if not k.startswith("_")}
        elif kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            for item in updates:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return history, config


@pytest.fixture
def offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("wandb.proto.wandb_internal_pb2")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def test_scalars_logged_at_their_iteration(offline):
    writer = WandbWriter("meshrecon-test", config={"SOLVER": {"BASE_LR": 0.01}}, log_dir=offline)
    with EventStorage(start_iter=0) as storage:
        for it in range(4):
            storage.iter = it
            storage.put_scalar("loss", 10.0 - it, smoothing_hint=False)
            if it == 3:
                # What EvalHook puts into the storage after an evaluation (it runs before the
                # writer's hook): the flattened results.
                storage.put_scalars(**{"shapenet/Chamfer-L2": 0.25}, smoothing_hint=False)
            if it in (1, 3):
                writer.write()
        writer.write()  # nothing new: logs nothing
    writer.close()
    history, config = _history_and_config(offline)
    # Each write logs every scalar put since the last one at its own iteration; loss at 0 and 2
    # was overwritten in the storage's latest() before a write, as for TensorBoard.
    assert sorted(history) == [1, 3], history
    assert history[1]["loss"] == 9.0
    assert history[3] == {"loss": 7.0, "shapenet/Chamfer-L2": 0.25}
    assert config["SOLVER"] == {"BASE_LR": 0.01}


def test_default_writers_adds_wandb_only_when_enabled(offline):
    cfg = get_cfg()
    names = [type(w).__name__ for w in default_writers(str(offline / "off"), 10, cfg)]
    assert "WandbWriter" not in names
    cfg.WANDB.ENABLED = True
    cfg.WANDB.MODE = "offline"
    cfg.WANDB.NAME = "run-a"
    writers = default_writers(str(offline / "on"), 10, cfg)
    wb = [w for w in writers if isinstance(w, WandbWriter)]
    assert len(wb) == 1
    assert wb[0].run.name == "run-a"
    with EventStorage(start_iter=5) as storage:
        storage.put_scalar("lr", 0.5, smoothing_hint=False)
        for w in writers:
            w.write()
    for w in writers:
        w.close()
    # The run's files go under OUTPUT_DIR, the whole config with them.
    history, config = _history_and_config(offline / "on")
    assert history[5]["lr"] == 0.5
    assert config["WANDB"]["NAME"] == "run-a"
    assert config["MODEL"]["META_ARCHITECTURE"] == cfg.MODEL.META_ARCHITECTURE


def test_bad_mode_is_refused(offline):
    with pytest.raises(ValueError, match="WANDB.MODE"):
        WandbWriter("p", mode="sometimes", log_dir=offline)


def test_only_the_main_process_logs(offline, monkeypatch):
    from meshrecon.utils import comm

    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    cfg = get_cfg()
    cfg.WANDB.ENABLED = True
    writers = default_writers(str(offline / "rank1"), 10, cfg)
    assert not any(isinstance(w, WandbWriter) for w in writers)
    assert not (offline / "rank1" / "wandb").exists()


def test_missing_package_is_a_clear_error(monkeypatch):
    # A None entry in sys.modules makes "import wandb" raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        WandbWriter("p")
