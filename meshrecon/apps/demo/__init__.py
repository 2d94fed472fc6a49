"""``meshrecon demo``: photos in, meshes / points / voxels and pictures out.

- :mod:`.single_view`: single-view reconstructors (the photo cropped to the training views).
- :mod:`.detector`: Mesh R-CNN-style detectors (every object of the photo).
- :mod:`.inputs`: which files to run on, reading photos and masks, the object crop.
- :mod:`.colors`: vertex colours sampled from the photo.
- :mod:`.index`: the run's ``index.html`` with a 3D viewer of its meshes.
"""
