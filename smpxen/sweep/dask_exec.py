"""`smpxen sweep --executor dask --scheduler ADDR`: the points as tasks on an existing
dask.distributed cluster (the optional extra smpxen[dask]).

Each task runs one machine (smpxen.sweep.runner.execute, in a temporary directory on
the worker) and returns the outcome (report, console, stderr); the client writes
the files. A machine uses every core of the host it runs on, so a worker should
run one task at a time: start workers with `--nthreads 1`, or give them a
resource (`dask worker ADDR --resources smpxen=1`) and pass `--dask-resource
smpxen`, which every task then requests. Workers need smpxen installed; the
config's text travels with the task (a kernel given as a path must exist at the
same path on the workers).

Ctrl-C on the client sets a distributed.Event the tasks poll every second: a
running task stops its machine (SIGINT, as Ctrl-C stops `smpxen up`) and tasks
not started return at once; the client waits for them before it exits.
"""
from __future__ import annotations

import time
import uuid

from smpxen.sweep.grid import SweepError
from smpxen.sweep.runner import INTERRUPT_GRACE_S, Stopped, execute_in_tempdir

INSTALL_HINT = "pip install 'smpxen[dask]'"


def require(scheduler: str | None) -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SweepError(f"--executor dask needs dask.distributed, which is not installed: "
                         f"{INSTALL_HINT}") from None
    if not scheduler:
        raise SweepError("--executor dask needs --scheduler ADDR (a running dask scheduler, "
                         "e.g. tcp://host:8786)")


def remote_run(task: dict, stop_event: str | None) -> dict:
    """The dask task: one machine on this worker."""
    from distributed import Event
    event = Event(stop_event) if stop_event else None
    state = {"checked": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if event is not None and now - state["checked"] >= 1.0:
            state["checked"] = now
            state["stop"] = event.is_set()
        return state["stop"]

    if should_stop():
        return {"name": task["name"], "stopped": True}
    try:
        return execute_in_tempdir(task, should_stop)
    except Stopped:
        return {"name": task["name"], "stopped": True}


def run_on_cluster(items, scheduler: str, resource: str | None, finished, progress) -> None:
    """items: [(point, task)]; finished(point, outcome) is called as each ends."""
    from distributed import Client, Event, as_completed, wait
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as e:
        raise SweepError(f"--scheduler {scheduler}: cannot connect: {e}") from None
    try:
        workers = client.scheduler_info().get("workers", {})
        if not workers:
            raise SweepError(f"--scheduler {scheduler}: the cluster has no workers")
        if resource:
            slots = sum(int(w.get("resources", {}).get(resource, 0)) for w in workers.values())
            if not slots:
                raise SweepError(f"--dask-resource {resource}: no worker offers it (start "
                                 f"workers with --resources {resource}=1)")
        else:
            slots = sum(int(w.get("nthreads", 1)) for w in workers.values())
            busy = [a for a, w in workers.items() if int(w.get("nthreads", 1)) > 1]
            if busy:
                progress.say(f"sweep: note: {len(busy)} worker(s) have more than one thread and "
                             f"will run several machines at once (start workers with --nthreads 1, "
                             f"or use --dask-resource)")
        progress.parallel = max(1, min(slots, len(items)))
        stop = Event(f"smpxen-sweep-stop-{uuid.uuid4().hex}", client=client)
        tag = uuid.uuid4().hex[:8]
        futures = {}
        for i, (point, task) in enumerate(items):
            fut = client.submit(remote_run, task, stop.name, key=f"smpxen-up-{tag}-{i}",
                                pure=False, resources={resource: 1} if resource else None)
            futures[fut] = point
        try:
            for fut in as_completed(list(futures)):
                point = futures[fut]
                try:
                    outcome = fut.result()
                except Exception as e:     # the worker died, or the task raised
                    outcome = {"name": point.name, "status": None, "report": None, "console": "",
                               "stderr": "", "command": "(dask task)", "elapsed_s": None,
                               "host": {}, "pid": None,
                               "note": f"dask task failed: {type(e).__name__}: {e}"[:300]}
                if outcome.get("stopped"):
                    continue
                finished(point, outcome)
        except KeyboardInterrupt:
            stop.set()
            wait(list(futures), timeout=INTERRUPT_GRACE_S + 30)
            client.cancel(list(futures))
            raise
    finally:
        client.close()
