"""Domain-0's control plane (`smpxen bench --group control`): what it costs to create,
build and start a domain through Domain-0's hypercalls (`xm create`), and to
destroy it, on machines of 1, 2 and 4 PCPUs; domains created and destroyed per
second; and the state of the machine after many cycles (exactly what it was).

Baselines from the same run, timed the same way (host wall clock around one
request to the control endpoint, from this process): one dom0_op through the
control endpoint and privcmd (bvt_ctxallow, a DOM0_SCHEDCTL GET: the floor every
verb pays), and the boot-time builder building the same domain in this process
(what building costs without hypercalls, round trips and the other PCPUs)."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from smpxen.measure import summary
from smpxen.testing import LiveMachine, write_config

KERNEL, MEMORY_MIB = "idle", 1
MACHINE = """
[machine]
cpus = {cpus}
memory_mib = 64
[dom0]
kernel = "idle"
cpu = 0
cmdline = "dom0 up"
"""


def _request(m: LiveMachine, verb: str, *args) -> tuple[float, str]:
    t = time.perf_counter()
    ok, out, err = m.request(verb, *args)
    dt = time.perf_counter() - t
    if not ok:
        raise RuntimeError(f"xm {verb} {' '.join(map(str, args))}: {err}")
    return dt * 1000, out


def _per_pcpus(cpus: int, samples: int) -> dict:
    """create and destroy times, one domain at a time, placed round the PCPUs."""
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        with LiveMachine(write_config(Path(d), MACHINE.format(cpus=cpus)), Path(d)) as m:
            m.wait_for("dom0 up")
            null, create, destroy = [], [], []
            for i in range(samples + 2):                # the first two warm up
                null.append(_request(m, "bvt_ctxallow")[0])
                ms, out = _request(m, "create", KERNEL, "--name", f"b{i}", "--memory", MEMORY_MIB,
                                   "--cpu", i % cpus)
                create.append(ms)
                destroy.append(_request(m, "destroy", out.split()[1])[0])
            m.stop()
    null, create, destroy = null[2:], create[2:], destroy[2:]
    return {"create_build_unpause_ms": summary(create, 2), "destroy_ms": summary(destroy, 2),
            "null_dom0_op_ms": summary(null, 2),
            "domains_per_s": round(1000 / (sorted(create)[len(create) // 2] + sorted(destroy)[len(destroy) // 2]), 1)}


def _cycles(count: int) -> dict:
    """count create/destroy cycles on 4 PCPUs, four domains alive at a time: the rate,
    and whether the hypervisor's tables came back exactly (smpxen/machine/hvstate.py)."""
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        with LiveMachine(write_config(Path(d), MACHINE.format(cpus=4)), Path(d)) as m:
            m.wait_for("dom0 up")
            before = json.loads(_request(m, "audit")[1])
            t = time.perf_counter()
            for batch in range(count // 4):
                ids = [_request(m, "create", KERNEL, "--name", f"c{batch}-{i}", "--memory", MEMORY_MIB)[1].split()[1]
                       for i in range(4)]
                for domid in ids:
                    _request(m, "destroy", domid)
            seconds = time.perf_counter() - t
            after = json.loads(_request(m, "audit")[1])
            m.stop()
    return {"count": count // 4 * 4, "seconds": round(seconds, 2), "per_s": round(count // 4 * 4 / seconds, 1),
            "state_unchanged": before == after, "audit_problems": after["audit_problems"]}


def _boot_builder(samples: int) -> dict:
    """The boot-time builder (smpxen/domain/builder.py) on the same domain."""
    from smpxen.domain.builder import DomainBuilder, DomainRequest
    from smpxen.guests.assemble import assemble_guest
    from smpxen.shm.boot import format_hypervisor_region
    from smpxen.shm.domains import DomainTable
    from smpxen.shm.frametable import FrameTable
    from smpxen.shm.layout import Layout
    from smpxen.shm.locks import Locks
    from smpxen.shm.ram import MachineRAM
    image = assemble_guest(KERNEL)
    ram = MachineRAM.create(64 << 20)
    ram.unlink()
    try:
        layout = Layout.compute(64 << 20, 4)
        ft = FrameTable(ram, layout, Locks(ram.fd))
        times = []
        for i in range(samples + 2):
            format_hypervisor_region(ram, layout, ft)
            dt = DomainTable(ram, layout)
            for slot in dt.slots:
                slot.state = 0
            t = time.perf_counter()
            DomainBuilder(ram, layout, ft, dt).build(
                DomainRequest(1, "b", image, MEMORY_MIB << 20, 0, "b", False))
            times.append((time.perf_counter() - t) * 1000)
            del dt
        del ft
        return summary(times[2:], 2)
    finally:
        ram.close()


def run(progress, quick: bool = False) -> dict:
    samples = 10 if quick else 40
    out = {"domain": {"kernel": KERNEL, "memory_mib": MEMORY_MIB}, "pcpus": {}}
    for cpus in (1, 2, 4):
        progress(f"control: create/destroy on {cpus} PCPU{'s' if cpus > 1 else ''}")
        out["pcpus"][str(cpus)] = _per_pcpus(cpus, samples)
    progress("control: the boot-time builder on the same domain")
    out["boot_builder_ms"] = _boot_builder(samples)
    count = 200 if quick else 1000
    progress(f"control: {count} create/destroy cycles on 4 PCPUs")
    out["cycles"] = _cycles(count)
    return {"control": out}
