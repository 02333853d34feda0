"""A backend that describes plain SGD but secretly trains with a 1 % larger learning rate."""

from __future__ import annotations

import copy

from wdparity.engine import reference
from wdparity_backends.numpy_backend import NumpyBackend


class Liar(NumpyBackend):
    name = "liar"

    def train(self, job, data):
        sem = copy.deepcopy(job["semantics"])
        sem["optimizer"]["lr"] *= 1.01
        return reference.run(sem, data, int(job["task"]["batch_size"]), job["dtype"])


backend = Liar()
