"""End to end: `smpxen up` boots real PCPU processes and real guests."""
import re

import pytest

from smpxen.testing import console_values, run_up, write_config

HELLO = re.compile(r"hello from domain (\d+) \((\S+)\) on pcpu (\d+)$")


def check_hello_machine(result, cpus):
    assert result.status == 0, result.stderr
    report = result.report
    assert len(report["pcpus"]) == cpus
    pids = {p["index"]: p["pid"] for p in report["pcpus"]}
    assert len(set(pids.values())) == cpus                       # one OS process per PCPU
    domains = report["domains"]
    assert [d["name"] for d in domains][0] == "dom0"
    assert len(domains) == cpus + 1                              # dom0 + one guest per CPU
    for d in domains:
        assert d["ended"]["how"] == "shutdown" and d["ended"]["detail"] == "poweroff"
        (line,) = d["console"]
        m = HELLO.match(line)
        assert m, line
        domid, name, pcpu = int(m[1]), m[2], int(m[3])
        assert (domid, name) == (d["id"], d["name"])
        assert pcpu == d["pcpu_assigned"] == d["pcpus_ran_on"][0]
        assert d["pcpu_pids"] == [pids[pcpu]]
        # shown on the terminal prefixed by the domain
        assert f"[d{domid} {name}] {line}" in result.stdout
    guests = [d for d in domains if not d["privileged"]]
    assert len({d["pcpu_pids"][0] for d in guests}) == cpus       # guests on distinct PCPUs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cpus", [1, 4, 8])
def test_up_default_machine(cpus, tmp_path, no_leaks):
    check_hello_machine(run_up("--cpus", cpus, report_dir=tmp_path), cpus)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name,cpus", [("1cpu", 1), ("8cpu", 8), ("default", 4), ("skewed", 4),
                                       ("64cpu", 64)])
def test_shipped_configs_boot(name, cpus, tmp_path, no_leaks):
    from importlib import resources
    path = resources.files("smpxen.configs") / f"{name}.toml"
    result = run_up("--config", path, report_dir=tmp_path, timeout=120)
    assert result.status == 0, result.stderr
    assert len(result.report["pcpus"]) == cpus
    assert all(d["ended"]["how"] == "shutdown" for d in result.report["domains"])


@pytest.mark.timeout(60)
def test_report_fields(tmp_path, no_leaks):
    result = run_up("--cpus", 2, report_dir=tmp_path)
    r = result.report
    assert r["exit_status"] == 0 and r["failure"] is None
    for key in ("build_s", "boot_s", "run_s", "total_s"):
        assert r["timings_s"][key] >= 0
    assert r["ipi_rtt_us_median"] > 0
    for p in r["pcpus"]:
        for key in ("pid", "hypercalls", "ipis_sent", "ipis_received", "host_cpu_s",
                    "peak_rss_bytes", "guest_instructions_estimate", "emulated_s"):
            assert key in p, key
        assert p["hypercalls"] >= 2            # console write + shutdown per domain
        assert p["ipis_sent"]["ipi_call"] == 32 and p["ipis_received"]["ipi_reply"] == 32
        assert p["peak_rss_bytes"] > 10 << 20
    assert r["config"]["cpus"] == 2


SELFTEST = """
[machine]
cpus = 1
console_io = "{policy}"
[[domain]]
name = "st"
kernel = "selftest_hypercalls"
cmdline = "{reason}"
"""

EXPECTED = {
    "xen_version": 0x20000, "xen_version_cmd1": -38, "xen_version_masked": 0x20000,
    "hypercall23": -38, "hypercall31": -38,
    "console_write": 6, "console_unmapped": -14, "console_hypervisor": -14,
    "console_empty": 0, "console_read": 0, "console_badcmd": -22,
    "vm_assist_enable": 0, "vm_assist_disable": 0, "vm_assist_badtype": -22, "vm_assist_badcmd": -38,
    "yield": 0, "sched_op_bad": -38,
    "multicall": 0, "multicall_0": 0x20000, "multicall_1": 6,
    "multicall_2": 0x55555555,       # nested multicall entry: not executed, result untouched
    "multicall_3": -14, "multicall_wild": -14,
}


results = console_values


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reason,name", [(0, "poweroff"), (1, "reboot"), (2, "suspend")])
def test_hypercall_selftest(reason, name, tmp_path, no_leaks):
    cfg = write_config(tmp_path, SELFTEST.format(policy="all", reason=reason))
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 0, result.stderr
    dom = result.domain("st")
    assert results(dom) == EXPECTED
    assert dom["console"].count("hi-mc") == 2      # direct write + the multicall's write
    assert dom["ended"] == {"how": "shutdown", "code": reason, "detail": name, "pcpu": 0}


@pytest.mark.timeout(60)
def test_console_io_dom0_only_policy(tmp_path, no_leaks):
    """Strict Xen 2.0: console_io is Domain-0's alone; a domU gets -EPERM and its
    shutdown is still reported."""
    cfg = write_config(tmp_path, SELFTEST.format(policy="dom0", reason=0))
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 0
    dom = result.domain("st")
    assert dom["console"] == []
    assert dom["ended"]["detail"] == "poweroff"
