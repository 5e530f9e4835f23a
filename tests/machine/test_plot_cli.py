"""`smpxen plot` in a fresh interpreter without matplotlib: one line saying what to install."""
import subprocess
import sys

import pytest

from support.plots import scaling_rows, write_results

pytest.importorskip("matplotlib", reason="smpxen plot needs matplotlib (pip install 'smpxen[plot]')")

def test_without_matplotlib_one_line_says_what_to_install(tmp_path):
    d = write_results(tmp_path / "r", scaling_rows(), ["machine.cpus", "machine.time_model"])
    code = ("import sys; sys.modules['matplotlib'] = None; from smpxen.cli import main; "
            "sys.argv[0] = 'smpxen'; main()")
    p = subprocess.run([sys.executable, "-c", code, "plot", str(d), "--kind", "speedup"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == ("smpxen plot: plotting needs matplotlib, which is not installed: "
                                "pip install 'smpxen[plot]'")
    assert not (d / "speedup.png").exists()
