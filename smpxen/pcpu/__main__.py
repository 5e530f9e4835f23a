"""Entry point of a PCPU process: `python -m smpxen.pcpu '<json bootstrap>'`.
Started only by the machine process (smpxen.machine)."""
import ctypes
import json
import os
import signal
import sys
import traceback

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the machine: the kernel SIGKILLs us when our parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:      # it died before prctl took effect
        os._exit(1)


def main() -> int:
    boot = json.loads(sys.argv[1])
    _die_with_parent(boot["machine_pid"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the machine's to handle
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
                pcpu.send_machine(M.FATAL, boot["index"], msg)
        except Exception:
            pass
        sys.stderr.write(f"smpxen pcpu{boot['index']}: internal error\n{msg}")
        return 70
    finally:
        if pcpu is not None:
            pcpu.close()


if __name__ == "__main__":
    sys.exit(main())
