#!/usr/bin/env python
"""Train or evaluate a model from a config: ``meshrecon train`` / ``meshrecon eval`` in a clone.

    python tools/train_net.py --config-file configs/X.yaml                 # train
    python tools/train_net.py --config-file configs/X.yaml --eval-only MODEL.WEIGHTS model.pth

The logic is :mod:`meshrecon.cli.train_net`; ``--help`` lists the options. Under torchrun this
file is the script to name (``torchrun ... tools/train_net.py --config-file ...``).
"""

from meshrecon.cli.train_net import Trainer, invoke_main, main, setup  # noqa: F401

if __name__ == "__main__":
    invoke_main()
