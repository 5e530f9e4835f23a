"""Every message between smpxen processes: a msgpack array [kind, src, *payload].
`src` is a PCPU index, or MACHINE for the machine process.

Flow control. Every process has one inbox, drained continuously by a thread of its
own (the PCPU's watcher, the machine's main loop), so a sender never waits on a
receiver that is itself waiting to send: sends cannot deadlock. What a queue can
hold is bounded at the sources, not by dropping messages:
  IPI_EVTCHN_SET   one per (domain, port) in flight: later sends coalesce into it
                   (smpxen/pcpu/events.py); so at most the ports of a PCPU's domains
  IPI_CALL         a caller waits for the reply before its next call, or sends one
                   per target (Mailbox.call_many); fire-and-forget calls (seq 0) come
                   only from Domain-0's control operations, one per hypercall
  IPI_REPLY/FAILED one per call;  IPI_MIGRATE one per move of a domain
  CONSOLE          per domain, what its bound admits (smpxen/pcpu/console.py:
                   64 KiB burst, 64 KiB/s, at least 64 bytes charged a write)
  machine -> PCPU  START and HALT once, PLATFORM_TIME one per request, MIGRATE and
                   TIME_PROBE one per period the user set; CTRL_REQUEST at most
                   CONTROL_RING_SIZE unanswered per domain (the machine counts the
                   CTRL_RESPONSEs, smpxen/machine/controller.py); CONSOLE_INPUT what
                   the user types (the PCPU keeps 128 bytes, drops the rest)
  CTRL_RESPONSE    one per CTRL_REQUEST
  PCPU -> machine  ONLINE, STATS, FATAL once; DOMAIN_ENDED, DOMAIN_CREATED and
                   DOMAIN_DESTROYED once a domain; answers one per request
  PRIVCMD          one per request of Domain-0's user space in flight: the control
                   endpoint (smpxen/control/) waits for each reply, so at most one per
                   xm request being served; a PCPU passes one on to Domain-0's new PCPU
  PRIVCMD_REPLY    one per PRIVCMD
The sockets' high-water marks (smpxen/ipc/endpoints.py) sit far above these bounds."""
from __future__ import annotations

import msgpack

MACHINE = -1

# PCPU -> machine
ONLINE = "online"              # [ONLINE, pcpu, pid]
CONSOLE = "console"            # [CONSOLE, pcpu, domid, seq, bytes]
# [kind, pcpu, domid, seq, nbytes]: output lost to its bound. seq numbers a domain's
# CONSOLE and CONSOLE_DROPPED messages; the machine shows them in that order
CONSOLE_DROPPED = "console_dropped"
DOMAIN_ENDED = "domain_ended"  # [DOMAIN_ENDED, pcpu, domid, how, code, detail]
STATS = "stats"                # [STATS, pcpu, dict]
FATAL = "fatal"                # [FATAL, pcpu, message]: the PCPU is about to exit on an internal error
PLATFORM_TIME_REQ = "platform_time_req"  # [kind, pcpu, seq]: read the platform timer
TIME_SAMPLE = "time_sample"    # [kind, pcpu, seq, system time (raw, ns), host ns]: answer to TIME_PROBE
MIGRATE_FAILED = "migrate_failed"  # [kind, pcpu, domid, target]: it does not host domid
# [kind, pcpu, domid, id, message | None, why, tot_pages | None]: the guest's answer to
# a CTRL_REQUEST (64 bytes) and the domain's size when it answered, or None and why
# it could not be delivered
CTRL_RESPONSE = "ctrl_response"
PRIVCMD_REPLY = "privcmd_reply"  # [kind, pcpu, seq, results, error]: Domain-0's user space done
DOMAIN_CREATED = "domain_created"  # [kind, pcpu, domid, processor, max_pages]: DOM0_CREATEDOMAIN
DOMAIN_DESTROYED = "domain_destroyed"  # [kind, pcpu, domid, stats]: DOM0_DESTROYDOMAIN done
# machine -> PCPU
START = "start"                # [START, MACHINE, {domids, ...}]
HALT = "halt"                  # [HALT, MACHINE]
PLATFORM_TIME = "platform_time"  # [kind, MACHINE, seq, ns since the machine's epoch]
TIME_PROBE = "time_probe"      # [kind, MACHINE, seq]: report your system time (measurement only)
MIGRATE = "migrate"            # [kind, MACHINE, domid, target pcpu]: move a domain
# [kind, src, domid, seq, message]: put it in the domain's control ring
CTRL_REQUEST = "ctrl_request"
# [kind, src, domid, seq, bytes]: Domain-0's console input. seq numbers the machine's
# CTRL_REQUESTs and CONSOLE_INPUTs to a domain; they reach it in that order
# (smpxen/pcpu/ctrl_if.py)
CONSOLE_INPUT = "console_input"
PRIVCMD = "privcmd"            # [kind, src, seq, steps]: run as Domain-0's user space (pcpu/privcmd.py)
# PCPU <-> PCPU: inter-processor interrupts
IPI_EVENT_CHECK = "ipi_event_check"    # [kind, src]: look for work (events, wakeups)
IPI_CALL = "ipi_call"                  # [kind, src, seq, function, args]: remote call
IPI_REPLY = "ipi_reply"                # [kind, src, seq, result]
IPI_FAILED = "ipi_failed"              # [kind, src, seq, reason]: the remote call raised
IPI_TSC_SYNC = "ipi_tsc_sync"          # [kind, 0, host_ns]: boot CPU to the others: your cycle counter reads 0 at host_ns (monotonic)
IPI_MIGRATE = "ipi_migrate"            # [kind, src, payload]: adopt this domain (pcpu/migration.py)
IPI_EVTCHN_SET = "ipi_evtchn_set"      # [kind, src, domid, port, sent_ns]: set this port pending (you own the domain)
IPI_KINDS = frozenset({IPI_EVENT_CHECK, IPI_CALL, IPI_REPLY, IPI_FAILED, IPI_TSC_SYNC, IPI_EVTCHN_SET,
                       IPI_MIGRATE})


def encode(*parts) -> bytes:
    return msgpack.packb(parts, use_bin_type=True)


def decode(data: bytes) -> list:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
