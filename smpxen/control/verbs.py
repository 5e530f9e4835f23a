"""The verbs of `smpxen xm` (Xen 2.0's tools/python/xen/xm/main.py), served by the
machine's control endpoint (smpxen/control/endpoint.py). Each does its work with
Domain-0's hypercalls (smpxen/control/xc.py); names of domains are the machine's
records, as xend kept them in Xen 2.0 (the hypervisor knows only ids).

A domain is named by its id or its name. Anything wrong - a domain that does not
exist, a bad number, a hypercall's refusal - is one line for the user."""
from __future__ import annotations

import os

from smpxen.config.schema import ConfigError
from smpxen.control import build, domfile
from smpxen.control.endpoint import Session, XmError, verb
from smpxen.control.xc import Xc
from smpxen.trace import xm_verbs  # noqa: F401  (the tbufs verb, for smpxen xentrace)
from smpxen.control import ctrl_verbs  # noqa: F401  (console, shutdown, mem-set: the control interface)
from smpxen.xen import dom0_ops as D
from smpxen.xen.xen import DOMID_FIRST_RESERVED


def _xc(s: Session) -> Xc:
    return Xc(s.privcmd, s.machine.privcmd_l1())


def _number(text: str, what: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise XmError(f"{what}: expected an integer, got {text!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise XmError(f"{what}: {value} is out of range ({lo}..{hi})")
    return value


def _args(s: Session, n: int, usage: str) -> list[str]:
    if len(s.args) != n:
        raise XmError(f"{s.verb}: expected {usage}, got {len(s.args)} argument{'s' if len(s.args) != 1 else ''}")
    return s.args


def domain_id(s: Session, xc: Xc, text: str) -> int:
    """DOM as a live domain's id: a number, or a name the machine knows."""
    names = s.machine.names()
    if text.isascii() and text.isdigit():       # not '²' or other Unicode digits
        domid = int(text)
    else:
        ids = [d for d, n in names.items() if n == text]
        if not ids:
            raise XmError(f"{s.verb}: no domain named {text!r}")
        domid = ids[0]
    if domid >= DOMID_FIRST_RESERVED or xc.domain_info(domid) is None:
        raise XmError(f"{s.verb}: no domain {text}")
    return domid


# ---- domains ------------------------------------------------------------------------------
@verb("list", "list [-l|--long] [DOM...]",
      "the domains: Name, Id, Mem(MB), CPU, State, Time(s); --long adds each one's VCPU context")
def xm_list(s: Session) -> str:
    xc = _xc(s)
    names = s.machine.names()
    args = [a for a in s.args if a not in ("-l", "--long")]
    long = len(args) != len(s.args)
    if args:
        infos = [xc.domain_info(domain_id(s, xc, a)) for a in args]
    else:
        infos = xc.domains()
    lines = ["Name              Id  Mem(MB)  CPU  State  Time(s)"]
    for d in infos:
        if d is None:
            continue                           # destroyed between the two questions
        lines.append(f"{names.get(d.domid, f'domain{d.domid}')[:16]:<16s} {d.domid:3d}  "
                     f"{d.tot_pages * 4096 >> 20:7d}  {d.cpu:3d}  {d.state:>5s}  {d.cpu_time_ns / 1e9:7.1f}")
        if long:
            lines += ["    " + line for line in _context_lines(xc, d)]
    return "\n".join(lines) + "\n"


def _context_lines(xc: Xc, d) -> list[str]:
    """DOM0_GETDOMAININFO with a context: the domain's VCPU, as xm list --long shows it."""
    try:
        c = xc.domain_context(d.domid)
    except XmError as e:
        return [f"context: {e}"]
    r = c.cpu_ctxt
    traps = sum(1 for t in c.trap_ctxt if t.address)
    return [f"tot_pages={d.tot_pages} max_pages={d.max_pages} shared_info_frame={d.shared_info_frame:#x} "
            f"shutdown_code={d.shutdown_code}",
            f"eip={r.eip:#010x} esp={r.esp:#010x} eflags={r.eflags:#010x} cs={r.cs:#06x} ss={r.ss:#06x} "
            f"ds={r.ds:#06x}",
            f"eax={r.eax:#010x} ebx={r.ebx:#010x} ecx={r.ecx:#010x} edx={r.edx:#010x} "
            f"esi={r.esi:#010x} edi={r.edi:#010x} ebp={r.ebp:#010x}",
            f"pt_base={c.pt_base:#010x} ldt_base={c.ldt_base:#010x} ldt_ents={c.ldt_ents} "
            f"gdt_ents={c.gdt_ents} guestos_ss={c.guestos_ss:#06x} guestos_esp={c.guestos_esp:#010x}",
            f"event_callback={c.event_callback_cs:#06x}:{c.event_callback_eip:#010x} "
            f"failsafe_callback={c.failsafe_callback_cs:#06x}:{c.failsafe_callback_eip:#010x} "
            f"fast_trap={c.fast_trap_idx:#x} traps_set={traps} fpu_valid={c.flags & 1}"]


@verb("create", "create FILE|KERNEL [--name N] [--memory MIB] [--cpu N|auto] [--cmdline TEXT] [-p]",
      "build a domain from a domain file (.toml) or a kernel and start it (-p, --paused: "
      "leave it paused)")
def xm_create(s: Session) -> str:
    from smpxen.guests.assemble import bundled_guest_names
    from smpxen.machine.images import KernelError, load_kernel
    paused = "--paused" in s.args or "-p" in s.args
    target, opts = domfile.parse_create_args([a for a in s.args if a not in ("--paused", "-p")])
    try:
        spec = domfile.load(target, opts, s.path, s.machine.cpus, bundled_guest_names())
    except ConfigError as e:
        raise domfile.config_error(e) from None
    try:
        image = load_kernel(spec.kernel, spec.memory_bytes)
    except KernelError as e:             # its text names the file already, an ELF's as resolved
        text = str(e) if str(e).startswith(str(spec.kernel)) else f"{spec.kernel}: {e}"
        raise XmError(f"create: {text}") from None
    if not s.machine.claim_name(spec.name):        # two clients at once may ask for one name
        raise XmError(f"create: a domain named {spec.name!r} exists already")

    def named(domid: int) -> None:
        s.tell_machine("domain_named", {"domid": domid, "name": spec.name, "kernel": str(spec.kernel),
                                        "memory_bytes": spec.memory_bytes,
                                        "cmdline": spec.render_cmdline(domid), "bvt": spec.bvt})
    try:
        domid = build.build_domain(_xc(s), image, spec.memory_bytes, spec.render_cmdline, spec.cpu,
                                   spec.bvt, named, unpause=not paused, controller=ctrl_verbs.controller_of(s))
    except XmError as e:
        raise XmError(f"create: {e}") from None
    finally:
        s.machine.release_name(spec.name)
    return f"domain {domid} ({spec.name}) created{' paused' if paused else ''}\n"


def _on_domain(s: Session, op) -> str:
    """A verb whose one argument is DOM: op(xc, domid), one dom0_op."""
    (dom,) = _args(s, 1, "DOM")
    xc = _xc(s)
    op(xc, domain_id(s, xc, dom))
    return ""


@verb("destroy", "destroy DOM", "terminate a domain at once: its memory, channels and id go back")
def xm_destroy(s: Session) -> str:
    return _on_domain(s, Xc.destroy)


@verb("pause", "pause DOM", "stop a domain from running (DOM0_PAUSEDOMAIN)")
def xm_pause(s: Session) -> str:
    return _on_domain(s, Xc.pause)


@verb("unpause", "unpause DOM", "let a paused domain run again")
def xm_unpause(s: Session) -> str:
    return _on_domain(s, Xc.unpause)


@verb("pincpu", "pincpu DOM CPU", "move a domain to a PCPU (DOM0_PINCPUDOMAIN)")
def xm_pincpu(s: Session) -> str:
    dom, cpu = _args(s, 2, "DOM CPU")
    xc = _xc(s)
    domid = domain_id(s, xc, dom)
    xc.pincpu(domid, _number(cpu, "pincpu: CPU", 0, s.machine.cpus - 1))
    return ""


@verb("mem-max", "mem-max DOM MEGABYTES", "set a domain's memory limit (DOM0_SETDOMAINMAXMEM)",
      aliases=("maxmem",))
def xm_mem_max(s: Session) -> str:
    dom, mib = _args(s, 2, "DOM MEGABYTES")
    xc = _xc(s)
    xc.setmaxmem(domain_id(s, xc, dom), _number(mib, f"{s.verb}: MEGABYTES", 0, 4095) * 1024)
    return ""


# ---- the scheduler ------------------------------------------------------------------------
@verb("bvt", "bvt DOM MCUADV WARPBACK WARPVALUE WARPL WARPU",
      "set a domain's BVT parameters (warp limits in ms); bvt DOM shows them")
def xm_bvt(s: Session) -> str:
    xc = _xc(s)
    if len(s.args) == 1:
        domid = domain_id(s, xc, s.args[0])
        a = xc.bvt_get(domid)
        return (f"mcu_advance={a.mcu_adv} warpback={a.warpback} warpvalue={a.warpvalue} "
                f"warpl={a.warpl // 1_000_000} warpu={a.warpu // 1_000_000}\n")
    dom, mcu, back, value, warpl, warpu = _args(s, 6, "DOM MCUADV WARPBACK WARPVALUE WARPL WARPU")
    domid = domain_id(s, xc, dom)
    xc.bvt_set(domid, _number(mcu, "bvt: MCUADV", 1, 0xFFFFFFFF), _number(back, "bvt: WARPBACK", 0, 1),
               _number(value, "bvt: WARPVALUE", -(1 << 31), (1 << 31) - 1),
               _number(warpl, "bvt: WARPL", 0, 1 << 40), _number(warpu, "bvt: WARPU", 0, 1 << 40))
    return ""


@verb("bvt_ctxallow", "bvt_ctxallow [CTX_ALLOW_NS]",
      "set (or show) BVT's context-switch allowance, in ns (DOM0_SCHEDCTL)")
def xm_bvt_ctxallow(s: Session) -> str:
    xc = _xc(s)
    if not s.args:
        return f"{xc.ctx_allow()}\n"
    (value,) = _args(s, 1, "CTX_ALLOW_NS")
    xc.ctx_allow(_number(value, "bvt_ctxallow: CTX_ALLOW_NS", 1, 0xFFFFFFFF))
    return ""


# ---- the host -----------------------------------------------------------------------------
@verb("info", "info", "the host: PCPUs, memory, Xen version, scheduler (DOM0_PHYSINFO)")
def xm_info(s: Session) -> str:
    _args(s, 0, "no arguments")
    xc = _xc(s)
    p = xc.physinfo()
    version = xc.xen_version()
    sysname, host, release, ver, machine = os.uname()
    rows = [("system", sysname), ("host", host), ("release", release), ("version", ver),
            ("machine", machine), ("cores", p.cores), ("hyperthreads_per_core", p.ht_per_core),
            ("cpu_mhz", p.cpu_khz // 1000), ("memory", p.total_pages // 256),
            ("free_memory", p.free_pages // 256), ("xen_major", version >> 16),
            ("xen_minor", version & 0xFFFF),
            ("scheduler", {D.SCHED_BVT: "bvt"}.get(xc.sched_id(), "?"))]
    return "".join(f"{k:<23s}: {v}\n" for k, v in rows)


@verb("dmesg", "dmesg [-c|--clear]", "the hypervisor's console ring (DOM0_READCONSOLE); -c empties it")
def xm_dmesg(s: Session) -> str:
    if s.args and s.args != ["-c"] and s.args != ["--clear"]:
        raise XmError(f"dmesg: unexpected {' '.join(s.args)!r} (dmesg [-c|--clear])")
    clear = bool(s.args)
    text = _xc(s).readconsole(D.CONSOLE_RING_SIZE, clear).decode(errors="replace")
    return "" if clear else text


@verb("audit", "audit", "a digest of the hypervisor's tables and the memory audit of every "
      "domain, as JSON (for tests: smpxen/machine/hvstate.py)", needs_dom0=False)
def xm_audit(s: Session) -> str:
    import json
    _args(s, 0, "no arguments")
    return json.dumps(s.machine.hv_state(), sort_keys=True) + "\n"
