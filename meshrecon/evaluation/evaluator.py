"""Evaluators and the inference loop that feeds them."""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from ..data.catalog import MetadataCatalog
from ..utils import comm
from ..utils.progress import progress_bar

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "build_evaluator",
    "inference_context",
    "inference_on_dataset",
    "register_evaluator",
    "registered_evaluator_types",
]

logger = logging.getLogger(__name__)

EvaluatorBuilder = Callable[..., "DatasetEvaluator"]
# Evaluator kinds (a dataset's ``evaluator_type`` metadata) -> builder(cfg, name, output_dir).
# A dict rather than a class registry: kinds ("pix3d", "shapenet") are not class names.
_EVALUATOR_BUILDERS: dict[str, EvaluatorBuilder] = {}


class DatasetEvaluator:
    """Accumulate (inputs, outputs) pairs of a model over a dataset, then compute metrics.

    ``reset()`` before a pass, ``process(inputs, outputs)`` per batch, ``evaluate()`` at the end.
    In distributed inference every process processes its shard; ``evaluate`` should gather the
    accumulated data (``comm.gather``) and compute metrics in the main process only.

    An evaluator whose ``evaluate`` logs its own readable tables sets ``logs_own_tables``;
    ``DefaultTrainer.test`` then writes the raw metrics (:func:`print_csv_format`) to the log
    file only, instead of repeating them on the console.
    """

    logs_own_tables: bool = False

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Accumulate one batch: the model's inputs and its outputs, item by item."""

    def evaluate(self) -> dict[str, Any] | None:
        """Return ``{task: {metric: value}}`` in the main process (None elsewhere is fine)."""
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators run as one; their results are merged (task names must differ)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]) -> None:
        super().__init__()
        self._evaluators = list(evaluators)

    @property
    def logs_own_tables(self) -> bool:  # type: ignore[override]
        return any(getattr(e, "logs_own_tables", False) for e in self._evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict[str, Any]:
        results: OrderedDict[str, Any] = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if comm.is_main_process() and result:
                for key, value in result.items():
                    if key in results:
                        raise KeyError(f"two evaluators both returned results for {key!r}")
                    results[key] = value
        return results


def register_evaluator(evaluator_type: str, builder: EvaluatorBuilder | None = None):
    """Register ``builder(cfg, dataset_name, output_dir) -> DatasetEvaluator`` for a kind.

    Usable as a decorator: ``@register_evaluator("shapenet") class ShapeNetEvaluator: ...``.
    """

    def _register(func: EvaluatorBuilder) -> EvaluatorBuilder:
        if (
            evaluator_type in _EVALUATOR_BUILDERS
            and _EVALUATOR_BUILDERS[evaluator_type] is not func
        ):
            raise KeyError(f"evaluator type {evaluator_type!r} is already registered")
        _EVALUATOR_BUILDERS[evaluator_type] = func
        return func

    return _register if builder is None else _register(builder)


def registered_evaluator_types() -> list[str]:
    """Return the registered evaluator kinds."""
    return sorted(_EVALUATOR_BUILDERS)


def build_evaluator(
    cfg, dataset_name: str, output_dir: str | None = None, *, evaluator_type: str | None = None
) -> DatasetEvaluator:
    """Build the evaluator of ``evaluator_type``, by default the one the dataset's metadata names.

    The dataset's ``MetadataCatalog.get(dataset_name).evaluator_type`` is its record format and
    the default evaluator. A model whose predictions need another one (OptimizeMVS's point sets
    on a ``"multiview"`` dataset) declares it; the engine reads that declaration from the model's
    head class and passes it here as ``evaluator_type`` (evaluation never imports modeling).

    Raises:
        KeyError: when neither ``evaluator_type`` nor the dataset names a kind, or the kind is
            not registered.
    """
    kinds = ", ".join(registered_evaluator_types()) or "(none)"
    kind = evaluator_type
    if kind is None:
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if kind is None:
            raise KeyError(
                f"dataset {dataset_name!r} has no evaluator_type in its metadata; set "
                f"MetadataCatalog.get({dataset_name!r}).evaluator_type to one of: {kinds}"
            )
        if kind not in _EVALUATOR_BUILDERS:
            raise KeyError(
                f"dataset {dataset_name!r} asks for evaluator_type {kind!r}, which is not "
                f"registered; registered: {kinds}"
            )
    elif kind not in _EVALUATOR_BUILDERS:
        raise KeyError(
            f"evaluator_type={kind!r} (asked for {dataset_name!r}) is not registered; "
            f"registered: {kinds}"
        )
    return _EVALUATOR_BUILDERS[kind](cfg, dataset_name, output_dir)


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def inference_on_dataset(
    model: nn.Module,
    data_loader: Iterable[list[dict]],
    evaluator: DatasetEvaluator | Sequence[DatasetEvaluator] | None,
    *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run ``model`` over ``data_loader`` in eval mode without gradients and evaluate.

    With several processes, each runs its shard of the data (use ``build_test_loader``); the
    evaluator gathers the results to the main process.

    Args:
        model: called on each batch; returns one output per input.
        data_loader: batches (lists) of model inputs.
        evaluator: one evaluator, several (run together), or None (only run and time).
        show_progress: show a tqdm progress bar in the main process.

    Returns:
        The evaluator's results (in the main process; possibly empty elsewhere).
    """
    num_devices = comm.get_world_size()
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif not isinstance(evaluator, DatasetEvaluator):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()

    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    logger.info("Start inference on %s batches", total if total is not None else "?")
    # The first batches pay for warm-up (allocations, autotuning): keep them out of the timing.
    num_warmup = min(5, total - 1) if total else 0
    start_time = time.perf_counter()
    compute_time = 0.0
    num_timed = 0
    num_images = 0
    progress = progress_bar(
        total=total,
        desc="inference",
        disable=not (show_progress and comm.is_main_process()),
        dynamic_ncols=True,
    )
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        for idx, inputs in enumerate(data_loader):
            if idx == num_warmup:
                start_time = time.perf_counter()
                compute_time = 0.0
                num_timed = 0
            progress.update(1)
            if not inputs:  # every item of the batch was corrupt and skipped
                continue
            start_compute = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            compute_time += time.perf_counter() - start_compute
            num_timed += 1
            num_images += len(inputs)
            evaluator.process(inputs, outputs)
    progress.close()

    total_time = time.perf_counter() - start_time
    logger.info(
        "Total inference time: %s (%.6f s / batch per device, on %d devices); pure compute: "
        "%.6f s / batch per device; %d inputs in this process",
        datetime.timedelta(seconds=int(total_time)),
        total_time / max(num_timed, 1),
        num_devices,
        compute_time / max(num_timed, 1),
        num_images,
    )
    results = evaluator.evaluate()
    # An empty result is allowed (e.g. outside the main process); None becomes {} for callers.
    return {} if results is None else results
