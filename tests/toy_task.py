"""A tiny regression task for the engine tests: a registered model, datasets and an evaluator.

Importing this module registers ``ToyRegressor`` / ``ToyImageModel`` (meta-architectures),
``toy_train`` / ``toy_test`` (datasets) and the ``toy`` evaluator. The data are generated from a
fixed seed, so every process and every run sees the same samples.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from meshrecon.config import get_cfg
from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.evaluation import DatasetEvaluator, register_evaluator, registered_evaluator_types
from meshrecon.modeling import META_ARCH_REGISTRY
from meshrecon.utils import comm

TOY_DIM = 4
TOY_TRAIN, TOY_TEST = "toy_train", "toy_test"
# A validation split whose score is a fixed function of the iteration (see IterationCurve).
TOY_CURVE_VAL = "toy_val_iteration_curve"


def toy_dicts(num: int, seed: int) -> list[dict]:
    """Samples of ``y = x . w + 0.5 + noise``, as dataset dicts."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num, TOY_DIM, generator=gen)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    y = x @ w + 0.5 + 0.01 * torch.randn(num, generator=gen)
    return [{"image_id": i, "x": x[i].tolist(), "y": float(y[i])} for i in range(num)]


class ToyRegressor(nn.Module):
    """A two-layer MLP; training returns the mean squared error, inference the predictions."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(TOY_DIM, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, batched_inputs: list[dict]):
        x = torch.stack([torch.as_tensor(d["x"], dtype=torch.float32) for d in batched_inputs])
        pred = self.net(x).squeeze(1)
        if self.training:
            # What this process trained on last, for the tests of the data order.
            self.last_ids = [d["image_id"] for d in batched_inputs]
            y = torch.tensor([d["y"] for d in batched_inputs], dtype=torch.float32)
            # A mean over the batch: with DDP's gradient averaging, 2 processes x 2 samples give
            # the same update as 1 process x 4 samples.
            return {"loss_mse": ((pred - y) ** 2).mean()}
        return [{"pred": float(p)} for p in pred]


class ToyImageModel(nn.Module):
    """Reports what it was given: image shape, per-channel means, and the target size."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, batched_inputs: list[dict]):
        out = []
        for d in batched_inputs:
            image = d["image"]
            out.append(
                {
                    "image_shape": tuple(image.shape),
                    "channel_means": (image.mean(dim=(1, 2)) * self.scale).tolist(),
                    "height": d["height"],
                    "width": d["width"],
                    "grad_enabled": torch.is_grad_enabled(),
                    "training": self.training,
                }
            )
        return out


class ToyEvaluator(DatasetEvaluator):
    """Mean squared error of ``pred`` against the dataset's ``y``, gathered over processes."""

    def __init__(self, cfg=None, dataset_name: str = TOY_TEST, output_dir: str | None = None):
        self._errors: list[tuple[int, float]] = []

    def reset(self) -> None:
        self._errors = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            self._errors.append((inp["image_id"], (out["pred"] - inp["y"]) ** 2))

    def evaluate(self):
        gathered = comm.gather(self._errors)
        if not comm.is_main_process():
            return {}
        errors = [e for part in gathered for e in part]
        ids = [i for i, _ in errors]
        return {
            "toy": {
                "mse": sum(e for _, e in errors) / len(errors),
                "count": len(errors),
                "unique": len(set(ids)),
            }
        }


class IterationCurveEvaluator(DatasetEvaluator):
    """Scores ``curve/score = min(iteration, 19)`` whatever the model predicts: a curve that
    rises to 19 and stays flat, the same in every process and run."""

    def __init__(self, cfg=None, dataset_name: str = TOY_CURVE_VAL, output_dir=None):
        pass

    def reset(self) -> None:
        pass

    def process(self, inputs, outputs) -> None:
        pass

    def evaluate(self):
        from meshrecon.utils.events import get_event_storage

        if not comm.is_main_process():
            return {}
        return {"curve": {"score": float(min(get_event_storage().iter, 19))}}


def register() -> None:
    """Register the toy model, datasets and evaluator (once per process)."""
    for cls in (ToyRegressor, ToyImageModel):
        if cls.__name__ not in META_ARCH_REGISTRY:
            META_ARCH_REGISTRY.register(cls)
    if "toy" not in registered_evaluator_types():
        register_evaluator("toy", ToyEvaluator)
    if TOY_TRAIN not in DatasetCatalog:
        DatasetCatalog.register(TOY_TRAIN, lambda: toy_dicts(64, seed=0))
        MetadataCatalog.get(TOY_TRAIN).evaluator_type = "toy"
    if TOY_TEST not in DatasetCatalog:
        DatasetCatalog.register(TOY_TEST, lambda: toy_dicts(13, seed=1))
        MetadataCatalog.get(TOY_TEST).evaluator_type = "toy"
    if "iteration_curve" not in registered_evaluator_types():
        register_evaluator("iteration_curve", IterationCurveEvaluator)
    if TOY_CURVE_VAL not in DatasetCatalog:
        DatasetCatalog.register(TOY_CURVE_VAL, lambda: toy_dicts(4, seed=3))
        MetadataCatalog.get(TOY_CURVE_VAL).evaluator_type = "iteration_curve"


register()


def toy_opts(output_dir: str, **overrides) -> list:
    """Config overrides (KEY VALUE list) for a short, deterministic toy run."""
    opts = {
        "MODEL.META_ARCHITECTURE": "ToyRegressor",
        "MODEL.DEVICE": "cpu",
        "DATASETS.TRAIN": (TOY_TRAIN,),
        "DATASETS.TEST": (TOY_TEST,),
        "DATALOADER.NUM_WORKERS": 0,
        "DATALOADER.ASPECT_RATIO_GROUPING": False,
        "SOLVER.IMS_PER_BATCH": 4,
        "SOLVER.BASE_LR": 0.01,
        "SOLVER.MOMENTUM": 0.9,
        "SOLVER.WEIGHT_DECAY": 1e-4,
        "SOLVER.MAX_ITER": 50,
        "SOLVER.STEPS": (35,),
        "SOLVER.WARMUP_ITERS": 5,
        "SOLVER.CHECKPOINT_PERIOD": 10,
        "TEST.EVAL_PERIOD": 0,
        "SEED": 0,
        "OUTPUT_DIR": output_dir,
    }
    opts.update(overrides)
    flat: list = []
    for key, value in opts.items():
        flat += [key, str(value) if isinstance(value, tuple | list) else value]
    return flat


def toy_cfg(output_dir: str, **overrides):
    """A frozen config for the toy task."""
    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(output_dir, **overrides))
    cfg.freeze()
    return cfg


def train_toy_main(output_dir: str, overrides: dict) -> None:
    """Train the toy task (in each process of a launch) and record comm checks from rank 0.

    Written for ``launch``: a module-level function, so that spawned processes can import it.
    """
    from meshrecon.engine import DefaultTrainer, default_setup

    cfg = toy_cfg(output_dir, **overrides)
    default_setup(cfg)
    rank, world = comm.get_rank(), comm.get_world_size()
    report = {
        "rank": rank,
        "world_size": world,
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "all_gather": comm.all_gather(rank * 10),
        "gather": comm.gather(rank + 1),
        "shared_seed": comm.all_gather(comm.shared_random_seed()),
        "reduce_dict": {
            k: float(v) for k, v in comm.reduce_dict({"a": torch.tensor(float(rank + 1))}).items()
        },
    }
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    report["results"] = results
    with open(os.path.join(output_dir, f"report_rank{rank}.json"), "w") as f:
        json.dump(report, f)


def record_hook(record_dir: str):
    """A hook that appends, after each step, what this process trained on to a JSON-lines file.

    ``<record_dir>/rank<r>.jsonl`` gets one line per run (``start_iter``, ``world_size``) and
    one per step (``iter``, ``lr`` used by that step, ``ids`` of this process's samples).
    """
    from meshrecon.engine import CallbackHook

    def write(entry: dict) -> None:
        os.makedirs(record_dir, exist_ok=True)
        with open(os.path.join(record_dir, f"rank{comm.get_rank()}.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")

    def before_train(trainer) -> None:
        write({"start_iter": trainer.start_iter, "world_size": comm.get_world_size()})

    def after_step(trainer) -> None:
        model = getattr(trainer.model, "module", trainer.model)  # DDP wraps it
        lr = trainer.storage.history("lr").latest()
        write({"iter": trainer.iter, "lr": lr, "ids": model.last_ids})

    return CallbackHook(before_train=before_train, after_step=after_step)


def read_records(record_dir: str) -> dict[int, dict[int, dict]]:
    """``{rank: {iteration: {"lr", "ids"}}}`` of what :func:`record_hook` wrote."""
    out: dict[int, dict[int, dict]] = {}
    for name in sorted(os.listdir(record_dir)):
        rank = int(name[len("rank") : -len(".jsonl")])
        with open(os.path.join(record_dir, name)) as f:
            for line in f:
                entry = json.loads(line)
                if "iter" in entry:
                    out.setdefault(rank, {})[entry["iter"]] = entry
    return out


def train_toy_record_main(
    output_dir: str, overrides: dict, record_dir: str, resume: bool = False
) -> None:
    """Train (or resume) the toy task, recording each step with :func:`record_hook`."""
    from meshrecon.engine import DefaultTrainer, default_setup

    cfg = toy_cfg(output_dir, **overrides)
    default_setup(cfg)
    trainer = DefaultTrainer(cfg)
    trainer.register_hooks([record_hook(record_dir)])
    trainer.resume_or_load(resume=resume)
    trainer.train()
