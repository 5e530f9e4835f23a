"""A PCPU process: `run(boot)` serves one PCPU until the machine halts it. The
machine forks the PCPU processes (smpxen/machine/spawn.py); `python -m smpxen.pcpu
'<json bootstrap>'` runs one in a fresh interpreter, for debugging."""
import ctypes
import json
import os
import signal
import sys
import traceback

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_TIMERSLACK = 29


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the machine: the kernel SIGKILLs us when our parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:      # it died before prctl took effect
        os._exit(1)


def _name_process(index: int) -> None:
    """`ps -o comm` and top show smpxen-pcpuN (the command line is the machine's)."""
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(f"smpxen-pcpu{index}".encode()[:15]), 0, 0, 0)


def _no_timer_slack() -> None:
    """A PCPU's timed waits stand for its local APIC timer, which has no slack; Linux
    lets a thread's timed sleeps run up to 50 us late by default. (timer_test, 3 ms
    timers, 6 interleaved runs each: mean lateness 245 -> 197 us.)"""
    ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def run(boot: dict) -> int:
    _die_with_parent(boot["machine_pid"])
    _name_process(boot["index"])
    _no_timer_slack()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the machine's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from smpxen.ipc import messages as M
    from smpxen.pcpu.loop import Pcpu
    pcpu = None
    try:
        pcpu = Pcpu(boot)
        pcpu.serve()
        return 0
    except Exception:
        msg = traceback.format_exc()
        try:
            if pcpu is not None:
                pcpu.mailbox.send_machine(M.FATAL, boot["index"], msg)
        except Exception:
            pass
        sys.stderr.write(f"smpxen pcpu{boot['index']}: internal error\n{msg}")
        return 70
    finally:
        if pcpu is not None:
            pcpu.close()


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1])))
