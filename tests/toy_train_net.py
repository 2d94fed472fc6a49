"""``tools/train_net.py`` with the toy task registered, for tests that start real processes.

Run it as ``python tests/toy_train_net.py ARGS`` or under ``torchrun``; ARGS are those of
``tools/train_net.py``. With ``TOY_RECORD_DIR`` set, each process records what it trained on
(``toy_task.record_hook``).
"""

import importlib.util
import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import toy_task  # noqa: E402  (registers the toy model and datasets)

spec = importlib.util.spec_from_file_location(
    "train_net", os.path.join(os.path.dirname(TESTS_DIR), "tools", "train_net.py")
)
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)

record_dir = os.environ.get("TOY_RECORD_DIR")
if record_dir:
    base_build_hooks = train_net.Trainer.build_hooks

    def build_hooks(self):
        return base_build_hooks(self) + [toy_task.record_hook(record_dir)]

    train_net.Trainer.build_hooks = build_hooks

if __name__ == "__main__":
    train_net.invoke_main()
