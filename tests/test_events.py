import json
import logging
import os

import pytest
import torch

from meshrecon.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardXWriter,
    get_event_storage,
)


def test_get_event_storage_needs_an_open_storage():
    with pytest.raises(RuntimeError, match="EventStorage"):
        get_event_storage()
    with EventStorage() as outer:
        assert get_event_storage() is outer
        with EventStorage() as inner:
            assert get_event_storage() is inner
        assert get_event_storage() is outer


def test_scalars_histories_smoothing_and_scopes():
    with EventStorage(start_iter=5) as storage:
        for value in (1.0, 100.0, 2.0):
            storage.put_scalar("loss", value)
            storage.put_scalar("lr", value / 10, smoothing_hint=False)
            storage.step()
        assert storage.iter == 8
        assert storage.history("loss").values() == [(1.0, 5), (100.0, 6), (2.0, 7)]
        smoothed = storage.latest_with_smoothing_hint(window_size=3)
        assert smoothed["loss"] == (2.0, 7)  # median of 1, 100, 2
        assert smoothed["lr"] == (pytest.approx(0.2), 7)  # not smoothed: the latest value
        storage.put_scalars(a=1, b=torch.tensor(2.0), cur_iter=3)
        assert storage.latest()["b"] == (2.0, 3)
        with storage.name_scope("val"):
            storage.put_scalar("acc", 0.5)
        assert "val/acc" in storage.histories()
        with pytest.raises(ValueError, match="smoothing_hint"):
            storage.put_scalar("loss", 1.0, smoothing_hint=False)
        with pytest.raises(KeyError, match="nope"):
            storage.history("nope")


def test_json_writer_writes_one_line_per_iteration(tmp_path):
    path = tmp_path / "metrics.json"
    with EventStorage() as storage:
        writer = JSONWriter(str(path), window_size=1)
        storage.put_scalars(loss=3.0, lr=0.1)
        storage.step()
        storage.put_scalars(loss=2.0, lr=0.1)
        writer.write()
        storage.step()
        storage.put_scalar("eval/mse", 0.5, smoothing_hint=False, cur_iter=1)
        storage.put_scalar("loss", 1.0)
        writer.write()
        writer.write()  # nothing new: nothing written
        writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["iteration"] for d in lines] == [1, 2]
    assert lines[0]["loss"] == 2.0 and lines[1]["loss"] == 1.0
    assert "eval/mse" not in lines[0] and "eval/mse" not in lines[1]  # iter 1 already written
    assert "iteration" in lines[0] and "lr" in lines[0]


def test_common_metric_printer_logs_losses_lr_and_eta(caplog):
    printer = CommonMetricPrinter(max_iter=100)
    with EventStorage(start_iter=9) as storage, caplog.at_level(logging.INFO):
        storage.put_scalars(loss_mse=0.25, time=0.5, data_time=0.01)
        storage.put_scalar("lr", 0.02, smoothing_hint=False)
        printer.write()
    line = caplog.records[-1].getMessage()
    assert "iter: 9" in line and "loss_mse: 0.25" in line and "lr: 0.02" in line
    assert "eta: 0:00:45" in line  # 90 remaining iterations x 0.5 s


def test_tensorboard_writer_writes_event_file(tmp_path):
    with EventStorage() as storage:
        writer = TensorboardXWriter(str(tmp_path))
        storage.put_scalar("loss", 1.0)
        storage.put_image("img", torch.rand(3, 4, 4))
        storage.put_histogram("weights", torch.randn(100), bins=10)
        writer.write()
        assert storage._vis_data == [] and storage._histograms == []
        writer.close()
    files = [f for f in os.listdir(tmp_path) if f.startswith("events.out.tfevents")]
    assert files and os.path.getsize(tmp_path / files[0]) > 0
