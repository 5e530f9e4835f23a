"""A guest can only hurt itself: an error in hypervisor code run for a domain (a
hypercall, a remote call it caused) crashes that domain with the reason and a
short traceback in the report; the PCPU, the machine and the other domains go on.

The faults are injected from outside the code under test: a sitecustomize module on
PYTHONPATH (every PCPU process imports it at start-up) wraps one hypercall handler."""
import textwrap

import pytest

from smpxen.testing import run_up, write_config
from support.inject import site_env

INJECT = """
from smpxen.hv.table import HYPERCALLS
from smpxen.xen.hypercall import Hypercall

real = HYPERCALLS[Hypercall.{name}]

def faulty(hv, *args):
    if hv.current.domid == {domid} and args[0] == {trigger}:
        {action}
    return real(hv, *args)

HYPERCALLS[Hypercall.{name}] = faulty
"""


def inject(tmp_path, **kw) -> dict:
    return site_env(tmp_path, INJECT.format(**kw))


MACHINE = """
[machine]
cpus = {cpus}
memory_mib = 32
[[domain]]
name = "victim"
kernel = "hypercall_loop"
cpu = 0
cmdline = "2000"
[[domain]]
name = "bystander"
kernel = "spin"
cpu = {bystander_cpu}
cmdline = "20000000"
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bystander_cpu", [0, 1])
def test_an_error_in_a_hypercall_crashes_only_the_caller(tmp_path, no_leaks, bystander_cpu):
    # xen_version(0) is what hypercall_loop calls; the victim is domain 1 (no dom0).
    env = inject(tmp_path, name="xen_version", domid=1, trigger=0,
                 action="raise RuntimeError('injected fault')")
    cfg = write_config(tmp_path, MACHINE.format(cpus=2, bystander_cpu=bystander_cpu))
    result = run_up("--config", cfg, "--quiet", report_dir=tmp_path, timeout=60, env=env)
    assert result.status == 1, result.stderr          # a domain crashed; the machine ran to the end
    victim, bystander = result.domain("victim"), result.domain("bystander")
    ended = victim["ended"]
    assert ended["how"] == "crashed"
    assert ended["detail"].startswith(
        "hypervisor error in hypercall xen_version: RuntimeError: injected fault\n")
    assert "sitecustomize.py" in ended["detail"]      # the innermost frames say where
    assert bystander["ended"]["how"] == "shutdown"
    assert any(line.startswith("spin done, checksum") for line in bystander["console"])
    assert all(p["pid"] for p in result.report["pcpus"])
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_a_failing_remote_call_crashes_the_caller_not_the_remote_pcpu(tmp_path, no_leaks):
    # Domain-0 pauses a domain hosted by PCPU 1: PCPU 1 runs dom_pause for it. The
    # injected fault makes that remote function raise on PCPU 1.
    env = site_env(tmp_path, textwrap.dedent("""
        from smpxen.pcpu import mailbox
        def broken(pcpu, domid, pause):
            raise ValueError("remote side failed")
        mailbox.REMOTE_FUNCTIONS["dom_pause"] = broken
    """))
    cfg = write_config(tmp_path, """
[machine]
cpus = 2
memory_mib = 32
[dom0]
kernel = "dom0_ctl"
cpu = 0
[[domain]]
name = "target"
kernel = "spin"
cpu = 1
cmdline = "20000000"
""")
    result = run_up("--config", cfg, "--quiet", report_dir=tmp_path, timeout=60, env=env)
    dom0, target = result.domain("dom0"), result.domain("target")
    assert dom0["ended"]["how"] == "crashed", dom0
    assert "pcpu1 (dom_pause): ValueError: remote side failed" in dom0["ended"]["detail"]
    assert target["ended"]["how"] == "shutdown"          # PCPU 1 and its domain went on
    assert result.status == 1, result.stderr
