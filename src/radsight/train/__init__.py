"""Training and evaluation of RadSight models (the ``radsight[train]`` extra).

Only this package may import torch, MONAI or matplotlib, and only inside the modules that
need them: serving (everything else in ``radsight``) never installs them.
"""

from __future__ import annotations

TRAIN_EXTRA_HINT = "training and evaluation need the train extra: pip install 'radsight[train]'"


class TrainExtraMissing(RuntimeError):
    """torch / MONAI / matplotlib are not installed."""

# A trained package's name and version unless ``--name`` / ``--version`` say otherwise. Never a
# shipped model's name: installed, a package of that name would take the shipped model's place.
DEFAULT_CLASSIFIER_NAME = "my-classifier"
DEFAULT_SEGMENTER_NAME = "my-organ-segmenter"
DEFAULT_VERSION = "0.1.0"
