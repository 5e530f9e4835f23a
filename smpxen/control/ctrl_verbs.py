"""The `smpxen xm` verbs that go through the domain controller, as xend served them
over the control interface in Xen 2.0 (smpxen/machine/controller.py; the rings
themselves: smpxen/pcpu/ctrl_if.py):

  console DOM        the domain's console: what it printed (the machine keeps the
                     last 64 KiB), then what it prints, as it comes, until it ends;
                     the client sends what is typed on its standard input
                     (smpxen/control/console_client.py)
  console-input DOM TEXT...   type TEXT and a newline on a domain's console
  shutdown DOM [--reboot|--halt] [--wait]   ask the domain to shut down
                     (CMSG_SHUTDOWN); it answers, then shuts down; --wait also
                     waits until it has. --halt asks for a poweroff, as Xen 2.0's
                     xend did (halt only cancelled xend's restart of the domain;
                     smpxen restarts no domain, so the two are the same here)
  mem-set DOM MB     ask the domain to have MB MiB (CMSG_MEM_REQUEST_SET): its
                     balloon gives frames back with dom_mem_op or takes more, up to
                     its maximum (xm mem-max), and answers

A domU's console input goes over its control ring (CMSG_CONSOLE); Domain-0's is the
hypervisor's serial input (CONSOLEIO_read, VIRQ_CONSOLE). A worker thread asks the
machine's main thread, which owns the controller, and waits for the answer
(REPLIES); a guest that does not answer in time leaves the request in its ring."""
from __future__ import annotations

import queue
import time

from smpxen.control.endpoint import Session, XmError, verb
from smpxen.machine.controller import PAGES_PER_MIB, REPLIES
from smpxen.xen.domain_controller import (CMSG_SHUTDOWN_NAMES, CMSG_SHUTDOWN_POWEROFF,
                                          CMSG_SHUTDOWN_REBOOT)

ANSWER_S = 10.0              # how long shutdown waits for the guest's answer
MEM_ANSWER_S = 30.0          # mem-set: ballooning a big domain takes a while
CONSOLE_POLL_S = 0.05        # how often `console` looks for new output
HEARTBEAT_S = 1.0            # `console` says something this often, to learn if its client left
WAIT_POLL_S = 0.25


def ask(s: Session, op: str, *args, timeout: float | None = None) -> dict:
    """One request to the domain controller; its answer ({"ok": ...}), or a
    TimeoutError after `timeout` seconds."""
    token, q = REPLIES.open()
    try:
        s.tell_machine("ctrl", {"token": token, "op": op, "args": list(args)})
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return q.get(timeout=WAIT_POLL_S)
            except queue.Empty:
                if s.stopping:
                    raise XmError("the machine is stopping") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError from None
    finally:
        REPLIES.close(token)


def _checked(s: Session, answer: dict) -> dict:
    if not answer.get("ok"):
        raise XmError(f"{s.verb}: {answer.get('error')}")
    return answer


def _domain(s: Session, text: str) -> tuple[int, str]:
    from smpxen.control.verbs import domain_id        # (verbs.py imports this module)
    from smpxen.control.xc import Xc
    domid = domain_id(s, Xc(s.privcmd, s.machine.privcmd_l1()), text)
    return domid, s.machine.names().get(domid, f"domain{domid}")


def _unanswered(s: Session, domid: int, name: str, seconds: float, driver: str) -> XmError:
    """No answer in time: because the domain is paused (it answers once unpaused), or
    because its kernel has no driver for the request."""
    from smpxen.control.xc import Xc
    info = Xc(s.privcmd, s.machine.privcmd_l1()).domain_info(domid)
    why = ("it is paused: it sees the request when unpaused" if info is not None and "p" in info.state
           else f"has its kernel a {driver}?")
    return XmError(f"{s.verb}: domain {domid} ({name}) did not answer within {seconds:.0f} s ({why}); "
                   "the request stays in its control ring")


def _ended_text(ended: dict) -> str:
    how = ended["how"]
    if how == "shutdown":
        return f"shut down ({ended['detail']})"
    if how == "destroyed":
        return "was destroyed"
    return f"{how} ({ended['detail'].splitlines()[0]})" if ended.get("detail") else how


# ---- console ---------------------------------------------------------------------------
@verb("console", "console DOM",
      "the domain's console, live: its output as it comes, your typed lines as its input "
      "(Ctrl-C leaves)")
def xm_console(s: Session) -> str:
    if len(s.args) != 1:
        raise XmError("console: expected DOM")
    domid, name = _domain(s, s.args[0])
    offset, said = 0, time.monotonic()
    while True:
        last = s.stopping or s.client_gone      # one more read: the machine serves it as it stops
        got = _checked(s, ask(s, "console_read", domid, offset))
        if got["lost"]:
            s.out(f"[smpxen: {got['lost']} bytes of earlier output are no longer kept]\n")
        if got["data"]:
            s.out(got["data"].decode("utf-8", errors="replace"))
            said = time.monotonic()
        elif time.monotonic() - said > HEARTBEAT_S:
            s.out("")                     # nothing to show; a client that left is noticed
            said = time.monotonic()
        offset = got["offset"]
        if got["ended"]:
            return f"[domain {domid} ({name}) {_ended_text(got['ended'])}]\n"
        if last:
            if s.stopping:
                raise XmError(f"console: the machine stopped (domain {domid} was still running)")
            return ""
        time.sleep(CONSOLE_POLL_S)


@verb("console-input", "console-input DOM TEXT...",
      "type TEXT (the words joined by spaces) and a newline on the domain's console")
def xm_console_input(s: Session) -> str:
    if len(s.args) < 2:
        raise XmError("console-input: expected DOM TEXT...")
    domid, _name = _domain(s, s.args[0])
    data = (" ".join(s.args[1:]) + "\n").encode()
    got = _checked(s, ask(s, "console_input", domid, data))
    if got["accepted"] < len(data):
        raise XmError(f"console-input: domain {domid} took {got['accepted']} of {len(data)} bytes "
                      "(it is not reading its console)")
    return ""


# ---- shutdown ---------------------------------------------------------------------------
@verb("shutdown", "shutdown DOM [--reboot|--halt] [--wait]",
      "ask a domain to shut down (poweroff, or reboot) over its control interface")
def xm_shutdown(s: Session) -> str:
    words = [a for a in s.args if not a.startswith("-")]
    flags = [a for a in s.args if a.startswith("-")]
    unknown = [f for f in flags if f not in ("--reboot", "-R", "--halt", "-H", "--wait", "-w")]
    if len(words) != 1 or unknown or ("--reboot" in flags or "-R" in flags) and ("--halt" in flags or "-H" in flags):
        raise XmError("shutdown: expected DOM [--reboot|--halt] [--wait]")
    kind = CMSG_SHUTDOWN_REBOOT if "--reboot" in flags or "-R" in flags else CMSG_SHUTDOWN_POWEROFF
    domid, name = _domain(s, words[0])
    try:
        got = ask(s, "shutdown", domid, kind, timeout=ANSWER_S)
        if got.get("ended") != "shutdown":     # shut down before its answer came: done too
            _checked(s, got)
    except TimeoutError:
        raise _unanswered(s, domid, name, ANSWER_S, "control-interface driver") from None
    said = f"domain {domid} ({name}): {CMSG_SHUTDOWN_NAMES[kind]} requested\n"
    if "--wait" not in flags and "-w" not in flags:
        return said
    s.out(said)
    while not s.stopping:
        state = _checked(s, ask(s, "state", domid))
        if state["ended"]:
            return f"domain {domid} ({name}) {_ended_text(state['ended'])}\n"
        time.sleep(WAIT_POLL_S)
    raise XmError("the machine is stopping")


# ---- memory -----------------------------------------------------------------------------
@verb("mem-set", "mem-set DOM MB",
      "ask a domain to balloon to MB MiB (CMSG_MEM_REQUEST_SET); it answers how far it got",
      aliases=("balloon",))
def xm_mem_set(s: Session) -> str:
    if len(s.args) != 2:
        raise XmError("mem-set: expected DOM MB")
    try:
        mib = int(s.args[1], 0)
    except ValueError:
        raise XmError(f"mem-set: MB: expected an integer, got {s.args[1]!r}") from None
    if not 1 <= mib <= 4095:
        raise XmError(f"mem-set: MB: {mib} is out of range (1..4095)")
    domid, name = _domain(s, s.args[0])
    target = mib * PAGES_PER_MIB
    try:
        got = _checked(s, ask(s, "mem_set", domid, target, timeout=MEM_ANSWER_S))
    except TimeoutError:
        raise _unanswered(s, domid, name, MEM_ANSWER_S, "balloon driver") from None
    pages = got["tot_pages"]
    if got["status"] != 1:
        raise XmError(f"mem-set: domain {domid} ({name}) has {pages} pages ({pages * 4} KiB): "
                      f"it could not reach {target} ({mib} MiB)")
    return f"domain {domid} ({name}): {mib} MiB ({pages} pages)\n"


# ---- domains built at run time ---------------------------------------------------------
def bind_controller(xc, domid: int) -> tuple[int, int]:
    """xend's channel to a new domain: EVTCHNOP_bind_interdomain made as Domain-0,
    Domain-0's first free port to the new domain's top port (where the boot-time
    builder puts it, smpxen/domain/ctrl_channel.py). -> (Domain-0's port, its port)."""
    from smpxen.control.privcmd import Request
    from smpxen.control.xc import XcError
    from smpxen.xen.hypercall import Hypercall
    from smpxen.xen.structs import EvtchnOp
    from smpxen.xen.xen import DOMID_SELF, EVTCHNOP_bind_interdomain, NR_EVENT_CHANNELS
    op = EvtchnOp(cmd=EVTCHNOP_bind_interdomain)
    b = op.u.bind_interdomain
    b.dom1, b.port1, b.dom2, b.port2 = DOMID_SELF, 0, domid, NR_EVENT_CHANNELS - 1
    req = Request()
    va = req.put(bytes(op))
    call = req.call(Hypercall.event_channel_op, va)
    back = req.read(va, len(bytes(op)))
    res = xc.pc.run(req)
    if res[call] < 0:
        raise XcError(f"domain {domid}: binding its control channel", res[call])
    got = EvtchnOp.from_buffer_copy(res[back]).u.bind_interdomain
    return got.port1, got.port2


def controller_of(s: Session):
    """For build_domain: the machine's controller attaches to the new domain's rings
    before it runs (the request goes ahead of the unpause on the same way to the
    machine's main thread, so it is served first)."""
    def attach(domid: int, port: int, remote: int) -> None:
        s.tell_machine("ctrl", {"token": 0, "op": "attach", "args": [domid, port, remote]})
    return attach
