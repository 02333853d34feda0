"""The README's two set-up commands stay true: CI runs the test one verbatim."""

from __future__ import annotations

import re

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
    assert len(blocks) == 2   # the assertions, describe() of a live torch optimizer
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
