#!/usr/bin/env python
"""Export a model for deployment with torch.export (.pt2) or ONNX (.onnx).

    python tools/export_model.py --config-file configs/synthetic/sphereinit.yaml \\
        --format torch.export --output exported/sphereinit \\
        MODEL.WEIGHTS output/synthetic_sphereinit/model_final.pth

Writes one file per exported program and ``export_info.json`` (inputs, outputs, dynamic
dimensions, the measured difference to eager mode); see the README's "Export" section. The
logic lives in :mod:`meshrecon.export` (``meshrecon.cli.export.main``).
"""

from __future__ import annotations

import sys

from meshrecon.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
