"""Faults injected from outside the code under test: a sitecustomize module on
PYTHONPATH, which every PCPU process (forked from `smpxen up`) has imported at
start-up, e.g. to wrap one hypercall handler."""
from __future__ import annotations

import os


def site_env(tmp_path, source: str) -> dict:
    """The environment for run_up(env=...) with `source` as sitecustomize, ahead of
    the PYTHONPATH the tests run with (so the tree under test is still the one run)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(source)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env
