"""Domain-0's control plane on live machines: `smpxen xm` against the control
endpoint, domains built and destroyed by Domain-0's hypercalls (privcmd), the
refusals an unprivileged domain gets, and the machine left exactly as it was after
creating and destroying many domains."""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import pytest

from smpxen.testing import LiveMachine, console_values, machine_env, run_up, smpxen_command, write_config

MACHINE = """
[machine]
cpus = {cpus}
memory_mib = 64
[dom0]
kernel = "idle"
cpu = 0
cmdline = "dom0 idle"
{extra}
"""
SPINNER = """
[[domain]]
name = "spinner"
kernel = "spin"
cpu = {cpu}
cmdline = "4000000000"
"""
CYCLES = 1000       # create/destroy cycles: ~17 s on a quiet 2-core host (smpxen bench --group control)


def _machine(tmp_path, cpus=2, extra=""):
    m = LiveMachine(write_config(tmp_path, MACHINE.format(cpus=cpus, extra=extra)), tmp_path)
    m.wait_for("[d0 dom0] dom0 idle")       # Domain-0's kernel is up (and blocked for good)
    return m


def _ok(m, *args) -> str:
    r = m.xm(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert r.stderr == "", (args, r.stderr)
    return r.stdout


def _refused(m, *args, needle: str) -> str:
    r = m.xm(*args)
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xm: ") and needle in lines[0], (args, r.stderr)
    return lines[0]


def _rows(listing: str) -> dict[str, list[str]]:
    lines = listing.strip().splitlines()
    assert lines[0].split() == ["Name", "Id", "Mem(MB)", "CPU", "State", "Time(s)"]
    return {line.split()[0]: line.split() for line in lines[1:] if not line.startswith(" ")}


@pytest.mark.timeout(120)
def test_xm_verbs_on_a_live_machine(tmp_path, no_leaks):
    with _machine(tmp_path, extra=SPINNER.format(cpu=1)) as m:
        rows = _rows(_ok(m, "list"))
        assert rows["dom0"][1:5] == ["0", "4", "0", "r----"]      # running: its user space asked
        assert rows["spinner"][1] == "1" and rows["spinner"][3] == "1"
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in _ok(m, "info").splitlines())}
        assert (info["cores"], info["xen_major"], info["xen_minor"], info["scheduler"]) == ("2", "2", "0", "bvt")
        assert info["memory"] == "64" and 0 < int(info["free_memory"]) < 64

        # create from a kernel with options, paused: its context is the builder's start of day
        out = _ok(m, "create", "idle", "--name", "web", "--memory", "2", "--cpu", "1",
                  "--cmdline", "web {domid} {name}", "-p")
        domid = int(re.fullmatch(r"domain (\d+) \(web\) created paused\n", out)[1])
        long = _ok(m, "list", "--long", "web")
        assert "--p--" in long.splitlines()[1]
        assert re.search(r"eip=0xc0000000 esp=0xc0\w+ eflags=0x00000202 cs=0x0819 ss=0x0821", long), long
        assert "fpu_valid=0" in long and "gdt_ents=0" in long
        _ok(m, "unpause", "web")
        # from a domain file, relative kernel path resolution and bvt included
        (tmp_path / "d.toml").write_text('name = "filed"\nkernel = "hello"\nmemory_mib = 1\n'
                                         'cmdline = "file {domid}"\nbvt = { mcu_advance = 30 }\n')
        _ok(m, "create", str(tmp_path / "d.toml"))
        assert _ok(m, "bvt", "web").startswith("mcu_advance=10 ")

        # scheduler and memory verbs
        _ok(m, "bvt", "web", "20", "0", "0", "5", "5")
        assert _ok(m, "bvt", "web") == "mcu_advance=20 warpback=0 warpvalue=0 warpl=5 warpu=5\n"
        _ok(m, "bvt_ctxallow", "3000000")
        assert _ok(m, "bvt_ctxallow") == "3000000\n"
        _ok(m, "mem-max", "web", "8")
        assert "max_pages=2048" in _ok(m, "list", "-l", "web")
        _ok(m, "pause", "spinner")
        assert _rows(_ok(m, "list", "spinner"))["spinner"][4] == "--p--"
        _ok(m, "unpause", "spinner")
        _ok(m, "pincpu", "web", "0")
        for _ in range(50):
            if _rows(_ok(m, "list", "web"))["web"][3] == "0":
                break
        assert _rows(_ok(m, "list", "web"))["web"][3] == "0"
        running = _ok(m, "list", "--long", "spinner")
        assert re.search(r"eip=0xc0\w+ esp=0xc0\w+", running) and "fpu_valid=1" in running

        # bad input: one line, exit 1, nothing changed
        _refused(m, "destroy", "nosuch", needle="no domain named 'nosuch'")
        _refused(m, "destroy", "77", needle="no domain 77")
        _refused(m, "destroy", "0", needle="invalid argument (-EINVAL)")     # Domain-0 itself
        _refused(m, "pincpu", "web", "9", needle="out of range")
        _refused(m, "bvt", "web", "0", "0", "0", "1", "1", needle="MCUADV: 0 is out of range")
        _refused(m, "frobnicate", needle="unknown verb 'frobnicate'")
        _refused(m, "create", "nosuchkernel", needle="unknown bundled guest 'nosuchkernel'")
        _refused(m, "create", "idle", "--memory", "2000", needle="memory_mib: must be between 1 and 1024")
        _refused(m, "create", "idle", "--name", "web", needle="a domain named 'web' exists")
        _refused(m, "create", str(tmp_path / "none.toml"), needle="file not found")
        (tmp_path / "not.elf").write_text("hello\n")
        _refused(m, "create", str(tmp_path / "not.elf"), needle=f"create: {tmp_path / 'not.elf'}: not an ELF")
        _refused(m, "create", "idle", "--memory", "300", needle="create: 300 MiB is more than the 248 MiB")
        (tmp_path / "bad.toml").write_text('name = "b"\nkernel = "idle"\nmemroy_mib = 4\n')
        _refused(m, "create", str(tmp_path / "bad.toml"), needle="memroy_mib: unknown key")
        _refused(m, "dmesg", "--all", needle="unexpected")
        assert sorted(_rows(_ok(m, "list"))) == ["dom0", "filed", "spinner", "web"]
        # a domain that has shut down (not destroyed) can still be paused, as on Xen
        for _ in range(100):
            if "s" in _rows(_ok(m, "list", "filed"))["filed"][4]:
                break
            time.sleep(0.05)
        assert _rows(_ok(m, "list", "filed"))["filed"][4] == "---s-"
        _ok(m, "pause", "filed")
        assert _rows(_ok(m, "list", "filed"))["filed"][4] == "--ps-"
        _ok(m, "unpause", "filed")
        assert _rows(_ok(m, "list", "filed"))["filed"][4] == "---s-"

        # two clients at once: both served, each gets its own domain
        results = {}

        def client(name):
            results[name] = m.request("create", "idle", "--name", name, "--memory", "1")
        threads = [threading.Thread(target=client, args=(n,)) for n in ("twin1", "twin2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(ok for ok, _out, _err in results.values()), results
        ids = {int(out.split()[1]) for _ok2, out, _e in results.values()}
        assert len(ids) == 2 and domid not in ids
        # four clients at once asking for one name: one domain gets it
        same = []
        threads = [threading.Thread(target=lambda: same.append(m.request("create", "idle", "--name", "same",
                                                                          "--memory", "1")))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(ok for ok, _out, _err in same) == [False, False, False, True], same
        assert {err for ok, _out, err in same if not ok} == {"create: a domain named 'same' exists already"}
        _ok(m, "destroy", "same")

        _ok(m, "destroy", "web")
        _ok(m, "destroy", "spinner")                    # running on PCPU 1: torn down there
        assert sorted(_rows(_ok(m, "list"))) == ["dom0", "filed", "twin1", "twin2"]
        audit = json.loads(_ok(m, "audit"))
        assert audit["audit_problems"] == {}
        dmesg = _ok(m, "dmesg")
        assert f"(XEN) domain {domid} created on pcpu 1 with 2048 KiB" in dmesg
        assert f"(XEN) domain {domid} destroyed" in dmesg
        assert _ok(m, "dmesg", "-c") == "" and _ok(m, "dmesg") == ""
        result = m.stop()
    assert result.status == 130, result.stderr
    doms = {d["name"]: d for d in result.report["domains"]}
    assert doms["web"]["destroyed"] and doms["web"]["ended"]["how"] == "destroyed"
    assert doms["web"]["console"] == [f"web {domid} web"]
    assert doms["filed"]["console"][0].startswith("file ") and doms["filed"]["ended"]["detail"] == "poweroff"
    assert result.report["control_endpoint"].endswith(f"-{m.tag}-control")


@pytest.mark.timeout(60)
def test_xm_without_a_machine_or_without_domain0(tmp_path, no_leaks):
    r = subprocess.run(smpxen_command("xm", "--machine", "424242-abcdef", "list"), capture_output=True,
                       text=True, env=machine_env())
    assert r.returncode == 1 and r.stderr.startswith("xm: no running machine '424242-abcdef'")
    cfg = write_config(tmp_path, "[machine]\ncpus = 1\n[[domain]]\nname = \"lonely\"\nkernel = \"idle\"\n")
    with LiveMachine(cfg, tmp_path) as m:
        _refused(m, "list", needle="this machine has no Domain-0")
        assert json.loads(_ok(m, "audit"))["domains"] == [1]
        m.stop()
    # a Domain-0 that has shut down leaves the machine up (a domU runs) but no control plane
    cfg = write_config(tmp_path, "[machine]\ncpus = 1\n[dom0]\nkernel = \"hello\"\n"
                                 "[[domain]]\nname = \"lonely\"\nkernel = \"idle\"\n")
    with LiveMachine(cfg, tmp_path) as m:
        m.wait_for("[d1 lonely]")
        for _ in range(100):                 # until Domain-0 has shut down
            if m.xm("list").returncode:
                break
        _refused(m, "list", needle="Domain-0 has shut down (poweroff); there is no control plane")
        _refused(m, "create", "idle", needle="create: Domain-0 has shut down (poweroff)")
        m.stop()


@pytest.mark.timeout(120)
def test_create_destroy_cycles_leave_the_machine_as_it_was(tmp_path, no_leaks):
    """CYCLES domains created (built by Domain-0's hypercalls, four at a time, spread
    over 4 PCPUs by the least-populated rule, each started) and destroyed: the free
    pool, every frame's state, the domain table and the event channels are what they
    were."""
    with _machine(tmp_path, cpus=4) as m:
        ok, before, err = m.request("audit")
        assert ok, err
        cpus = set()
        for batch in range(CYCLES // 4):
            ids = []
            for i in range(4):
                ok, out, err = m.request("create", "idle", "--name", f"c{batch}-{i}", "--memory", "1")
                assert ok, (batch, i, err)
                ids.append(out.split()[1])
            if batch == 0:
                cpus = {row[3] for row in _rows(_ok(m, "list", *ids)).values()}
            for domid in ids:
                ok, _out, err = m.request("destroy", domid)
                assert ok, (batch, domid, err)
        ok, after, err = m.request("audit")
        assert ok, err
        result = m.stop()
    before, after = json.loads(before), json.loads(after)
    assert before == after
    assert before["audit_problems"] == {} and before["domains"] == [0]
    assert cpus == {"0", "1", "2", "3"}      # the least-populated PCPU each time
    destroyed = [d for d in result.report["domains"] if d["destroyed"]]
    assert len(destroyed) == CYCLES
    assert all(d["console"] == [d["name"]] or d["console"] == [] for d in destroyed)


@pytest.mark.timeout(60)
def test_an_unprivileged_domain_is_refused_the_control_plane(tmp_path, no_leaks):
    cfg = write_config(tmp_path, """
        [machine]
        cpus = 1
        [dom0]
        kernel = "hello"
        [[domain]]
        name = "rogue"
        kernel = "ctl_refused"
        """)
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 0, result.stderr
    got = console_values(result.domain("rogue"))
    eperm = {k: -1 for k in ("createdomain", "destroydomain", "builddomain", "getmemlist", "getdomaininfo",
                             "getpageframeinfo", "getpageframeinfo2", "readconsole", "setdomaininitialmem",
                             "setdomainmaxmem", "setdomainvmassist", "iopl", "msr",
                             "update_va_mapping_otherdomain", "dom_mem_op_other")}
    assert got == {**eperm, "set_foreigndom": -22, "done": 1}


OWN_CODE = """
[machine]
cpus = 2
memory_mib = 48
[dom0]
kernel = "ctrlif_demo"
cpu = 0
cmdline = "timeout=60"
[[domain]]
name = "demo"
kernel = "ctrlif_demo"
memory_mib = 4
cpu = 1
cmdline = "timeout=60"
[[domain]]
name = "plain"
kernel = "hello"
memory_mib = 4
cpu = 1
"""


@pytest.mark.timeout(60)
def test_a_domain_built_where_another_kernel_ran_runs_its_own_code(tmp_path, no_leaks):
    """Two kernels that share their start (the bundled runtime) at the same addresses,
    built one after the other on one PCPU, or built on another and moved there before
    it ran: the second runs its own code, not translations the core kept of the
    first's (it ran the idle kernel's before)."""
    with LiveMachine(write_config(tmp_path, OWN_CODE), tmp_path) as m:
        m.wait_for("[d1 demo] ready=1")
        _ok(m, "create", "idle", "--name", "first", "--memory", "1", "--cpu", "0")
        m.wait_for("[d3 first] first")
        _ok(m, "create", "ctrlif_demo", "--name", "moved", "--memory", "2", "--cpu", "1",
            "--cmdline", "timeout=60", "-p")
        _ok(m, "pincpu", "moved", "0")
        for _ in range(50):
            if _rows(_ok(m, "list", "moved"))["moved"][3] == "0":
                break
        _ok(m, "unpause", "moved")
        m.wait_for("[d4 moved] ready=1", timeout=10)
        _ok(m, "create", "ctrlif_demo", "--name", "second", "--memory", "2", "--cpu", "0",
            "--cmdline", "timeout=60")
        m.wait_for("[d5 second] ready=1", timeout=10)
        result = m.stop()
    for name in ("moved", "second"):
        assert result.domain(name)["console"][:2] == ["ctrl_if=1", "ready=1"], name


@pytest.mark.timeout(90)
def test_open_consoles_do_not_keep_other_verbs_waiting(tmp_path, no_leaks):
    """More consoles than the endpoint has workers for short verbs: those verbs are
    still served; consoles beyond their own limit are refused with one line; all end
    with their domain."""
    from smpxen.control.endpoint import MAX_STREAMS, MAX_WORKERS
    assert MAX_STREAMS > MAX_WORKERS
    with _machine(tmp_path, cpus=1) as m:
        _ok(m, "create", "idle", "--name", "w", "--memory", "1")
        consoles = []
        threads = [threading.Thread(target=lambda: consoles.append(m.request("console", "w")))
                   for _ in range(MAX_STREAMS + 2)]
        for t in threads:
            t.start()
        listed = []
        lister = threading.Thread(target=lambda: listed.append(m.request("list", "w")))
        lister.start()
        lister.join(30)
        assert listed and listed[0][0], listed      # served beside the open consoles
        for _ in range(100):                       # the two beyond the limit are refused at once
            if len(consoles) == 2:
                break
            time.sleep(0.1)
        assert [err for _ok2, _out, err in consoles] == [f"console: {MAX_STREAMS} consoles or waiting "
                                                         "shutdowns are open already; close one"] * 2
        _ok(m, "destroy", "w")
        for t in threads:
            t.join(30)
        m.stop()
    assert len(consoles) == MAX_STREAMS + 2
    assert sum(ok and out.endswith("[domain 1 (w) was destroyed]\n") for ok, out, _e in consoles) == MAX_STREAMS
