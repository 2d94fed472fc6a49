#!/usr/bin/env python
"""Turn a folder of meshes into a registered ShapeNet-style dataset (``meshrecon render-shapes``).

    python tools/render_shapes.py MESH_FOLDER --name mydata            # category folders
    python tools/render_shapes.py MESH_FOLDER --name mydata --csv cats.csv   # file,category rows
    python tools/train_net.py --config-file configs/synthetic/voxmesh.yaml \\
        DATASETS.TRAIN '("mydata_train",)' DATASETS.TEST '("mydata_test",)'

``--help`` lists the options and what is written where; the logic lives in
:mod:`meshrecon.data.datasets.custom_shapes`.
"""

import sys

from meshrecon.data.datasets.custom_shapes.cli import main

if __name__ == "__main__":
    sys.exit(main())
