"""Training and inference drivers: the train loop, hooks, default trainer/predictor, launch."""

from .defaults import (
    DefaultPredictor,
    DefaultTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
)
from .hooks import (
    CallbackHook,
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
)
from .launch import launch
from .output_lock import OutputDirLockedError, acquire_output_dir_lock
from .plateau import PlateauResult, detect_plateau
from .train_loop import HookBase, SimpleTrainer, TrainerBase
from .validation import ValidationHook

__all__ = [
    "CallbackHook",
    "DefaultPredictor",
    "DefaultTrainer",
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "OutputDirLockedError",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PlateauResult",
    "SimpleTrainer",
    "TrainerBase",
    "ValidationHook",
    "acquire_output_dir_lock",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "detect_plateau",
    "launch",
]
