"""The yardstick every score is measured with: the MNIST feature network shipped in the package, named by a hash
of its weights. Reading that hash needs no TensorFlow, so a sweep or a resume can refuse, before any work, to mix
scores of two different networks (a FID under one network means nothing under another)."""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Iterable

import numpy as np

from ganstudy.config import ConfigError

WEIGHTS, INFO = "mnist_classifier.keras", "mnist_classifier.json"
RETRAIN = "python -m ganstudy.classifier"


def shipped_file(name: str):
    return resources.files("ganstudy") / "weights" / name


def shipped_info() -> dict:
    """The shipped network's hash, held-out accuracy, recipe and training images."""
    return json.loads(shipped_file(INFO).read_text())


def weights_hash(arrays: Iterable[np.ndarray]) -> str:
    """12 hex digits of SHA-256 over the weights' float32 bytes, in the model's order (the file's own bytes
    change with Keras's save date; the weights do not)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()[:12]


def refuse_other(found: str | None, what: str) -> None:
    """One line and no work when `what` was scored with another feature network than the shipped one."""
    mine = shipped_info()["hash"]
    if found is not None and found != mine:
        raise ConfigError(f"{what} was scored with feature network {found}, this ganstudy measures with {mine}: "
                          "their FIDs are not comparable; start a new run or study (or install the ganstudy it used)")
