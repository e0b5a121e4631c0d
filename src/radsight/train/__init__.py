"""Training and evaluation of RadSight models (the ``radsight[train]`` extra).

Only this package may import torch, MONAI or matplotlib, and only inside the modules that
need them: serving (everything else in ``radsight``) never installs them.
"""

from __future__ import annotations

TRAIN_EXTRA_HINT = "training and evaluation need the train extra: pip install 'radsight[train]'"


class TrainExtraMissing(RuntimeError):
    """torch / MONAI / matplotlib are not installed."""
