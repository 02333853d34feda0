"""The README's two set-up commands stay true: CI runs the test one verbatim."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    cmds = readme_commands()
    assert len(cmds) == 2
    assert cmds[0].rstrip().endswith("wdparity run")
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1].strip() in ci.splitlines()


def _project_section() -> str:
    return (ROOT / "README.md").read_text().split("## Use it in your project", 1)[1].split("\n## ", 1)[0]


def test_the_python_example_of_use_it_in_your_project_runs_as_written(tmp_path):
    """The README's example, verbatim, as a script of its own (nothing evaluated in this process)."""
    import importlib.util
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.+?)\n```", _project_section(), flags=re.S)
    assert len(blocks) == 3   # the assertions, describe() of a live torch optimizer, the user's train.py
    for i, block in enumerate(blocks):
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue
        script = tmp_path / f"example{i}.py"
        script.write_text(block + "\n")
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (i, proc.stderr[-2000:])


def test_the_commands_of_use_it_in_your_project_are_the_tested_options():
    text = _project_section()
    assert "pytest --wdparity comparisons/" in text
    assert "wdparity run --junit report.xml --trajectories trajectories/" in text


def test_the_script_commands_of_use_it_in_your_project_run_on_its_train_py(tmp_path):
    """The README's train.py, written where a user would keep it, and its bash block run line by line there."""
    import importlib.util
    import shlex

    from conftest import cli

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    section = _project_section()
    script = next(b for b in re.findall(r"```python\n(.+?)\n```", section, flags=re.S) if b.startswith("# train.py"))
    (tmp_path / "train.py").write_text(script + "\n")
    commands = re.search(r"```bash\n(wdparity describe train.py.+?)\n```", section, flags=re.S).group(1).splitlines()
    assert [c.split()[1] for c in commands] == ["describe", "translate", "translate"]
    outs = []
    for command in commands:
        proc = cli(*shlex.split(command)[1:], cwd=tmp_path)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        outs.append(proc.stdout)
    assert "momentum 0.9" in outs[0] and "weight_decay = 0.0001" in outs[0]
    assert "backend = \"optax\"" in outs[1] and "import optax" in outs[1] and "optimizer = " in outs[1]
    assert outs[2].splitlines()[2].split()[:2] == ["framework", "status"] and "torch      exact" in outs[2]
