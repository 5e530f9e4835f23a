"""Runs the benchmark groups and prints one JSON object."""
from __future__ import annotations

import json
import platform
import sys
import time

import psutil

# name -> (module, function): each returns a dict of keys for the JSON object.
GROUPS = {
    "machine": ("smpxen.bench.machine", "run"),
    "time": ("smpxen.bench.timebench", "run"),
    "mm": ("smpxen.bench.mm", "run"),
    "events": ("smpxen.bench.events", "run"),
    "soak": ("smpxen.bench.soak", "run"),
    "fuzz": ("smpxen.bench.fuzz", "run"),
    "trace": ("smpxen.bench.trace", "run"),
    "scale": ("smpxen.bench.scale", "run"),
    "control": ("smpxen.bench.control", "run"),
}


def run_bench(groups, quick: bool, out_path: str | None) -> dict:
    import importlib

    def progress(text):
        sys.stderr.write(f"smpxen bench: {text} ...\n")
        sys.stderr.flush()
    result = {"host": {"python": platform.python_version(), "cpus": psutil.cpu_count(),
                       "machine": platform.machine()},
              "quick": quick}
    t = time.monotonic()
    for name in groups:
        module, fn = GROUPS[name]
        result.update(getattr(importlib.import_module(module), fn)(progress, quick=quick))
    result["bench_s"] = round(time.monotonic() - t, 1)
    text = json.dumps(result, indent=2)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text + "\n")
    print(text)
    return result
