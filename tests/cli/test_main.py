"""The ``seqloom`` dispatcher and the ``seqloom-<command>`` console scripts."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqloom.cli import main as cli


def test_every_command_has_a_console_script_that_runs_it() -> None:
    # the installed distribution's console scripts (pyproject's [project.scripts]; tomllib needs Python 3.11)
    entries = importlib.metadata.distribution("seqloom").entry_points
    scripts = {e.name: e.value for e in entries if e.group == "console_scripts"}
    assert scripts.pop("seqloom") == "seqloom.cli.main:main"
    assert sorted(scripts) == sorted(f"seqloom-{name}" for name in cli.COMMANDS)
    for script, target in scripts.items():
        module, attr = target.split(":")
        entry = getattr(sys.modules[module] if module in sys.modules else __import__(module, fromlist=[attr]), attr)
        assert callable(entry) and entry.__name__ == script.removeprefix("seqloom-").replace("-", "_")


def test_ctrl_c_ends_a_command_with_interrupted_and_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import seqloom.cli.score as score

    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(score, "main", interrupted)
    assert cli.main(["score", "--sys", "x"]) == 130
    assert capsys.readouterr().err == "seqloom score: interrupted\n"


def test_ctrl_c_at_the_interactive_prompt_ends_without_a_traceback(fairseq_fixtures: Path) -> None:
    """Ending ``seqloom interactive`` with Ctrl-C rather than Ctrl-D is common: it gets one line, not a traceback."""
    mt = fairseq_fixtures / "mt"
    cmd = [sys.executable, "-m", "seqloom", "interactive", str(mt / "data-bin"), "--path",
           str(mt / "checkpoints" / "checkpoint_best.pt"), "--cpu", "--source-lang", "en", "--target-lang", "es"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("In the beginning\n")
    proc.stdin.flush()
    lines = [proc.stdout.readline() for _ in range(4)]  # S-, W-, H-, D- of the first sentence; then it waits
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert lines[0].startswith("S-0") and proc.returncode == 130, err[-2000:]
    assert "seqloom interactive: interrupted" in err and "Traceback" not in err
