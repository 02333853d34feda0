"""Backends that crash, raise, hang, print garbage or lack their framework (for the harness tests)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from wdparity_backends.numpy_backend import NumpyBackend


class Raises(NumpyBackend):
    name = "raises"

    def train(self, job, data):
        raise RuntimeError("deliberate failure inside train")


class Crashes(NumpyBackend):
    name = "crashes"

    def train(self, job, data):
        os._exit(3)


class Hangs(NumpyBackend):
    name = "hangs"

    def train(self, job, data):
        time.sleep(3600)


class Slow(NumpyBackend):
    """Writes its worker's pid to $WDPARITY_TEST_MARKER, then trains for a minute (a node can be killed meanwhile)."""

    name = "slow"

    def train(self, job, data):
        marker = os.environ.get("WDPARITY_TEST_MARKER")
        if marker:
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(60)
        return super().train(job, data)


class Garbage(NumpyBackend):
    name = "garbage"

    def train(self, job, data):
        print("this is not the protocol", flush=True)
        sys.stdout.write("done nonsense\n")
        return {"weight": np.zeros((3, 2)), "bias": np.zeros(3)}


class Missing(NumpyBackend):
    name = "missing"
    modules = ("a_framework_that_is_not_installed",)
    install_hint = "pip install a-framework"


raises, crashes, hangs, garbage, missing, slow = Raises(), Crashes(), Hangs(), Garbage(), Missing(), Slow()
