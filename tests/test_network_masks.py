"""Held-out style check (issue 19): in every backend that trains networks, a mask or pattern written in the
framework's own terms that matches no parameter is exit 2, naming the key and listing the parameters that exist
(tests/data/network_masks.toml holds one such run per backend); and a backend that trains networks must be there."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import cli

from wdparity.run import registry
from wdparity.tools.translate import toml_value

CASES = tomllib.loads((Path(__file__).parent / "data" / "network_masks.toml").read_text())["backends"]
TASK = 'num_inputs = 6\nn_train = 8\nbatch_size = 4\nepochs = 1\nmodel = { hidden = [5, 4], norm = "layer" }'


def test_every_backend_that_trains_networks_has_a_case():
    assert set(registry.network_backends()) == set(CASES)


@pytest.mark.parametrize("backend", sorted(CASES))
def test_a_pattern_matching_nothing_is_exit_2_listing_the_parameters(backend, tmp_path):
    spec = CASES[backend]
    body = "\n".join(f"{k} = {toml_value(v)}" for k, v in spec["run"].items())
    path = tmp_path / "case.toml"
    path.write_text(f'title = "t"\n[task]\n{TASK}\n[runs.a]\nbackend = "{backend}"\n{body}\n'
                    '[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n')
    done = cli("check", str(path))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr + done.stdout
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"runs.a.{spec['key']}" in lines[0] and spec["lists"] in lines[0], lines[0]
