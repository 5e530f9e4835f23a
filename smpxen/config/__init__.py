"""Machine configuration: one TOML file describes the machine and what runs on it.

    cfg = load_config("configs/default.toml", cpus=4,
                      bundled_guests={"hello", "spin"},
                      reserve_bytes=Layout.reserve_bytes,
                      domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * PAGE_SIZE)

Every key is checked; any problem raises ConfigError whose str() is one line,
``<file>: <key path>: <reason>`` (e.g. ``configs/x.toml: domain[1].cpu: ...``).
Key paths name the entry as written in the file: ``domain[1]`` is the second
``[[domain]]`` entry, before ``count`` expansion.

The schema is documented in configs/default.toml; in short:

    [machine]      name, cpus, memory_mib, time_model, console_io, scheduler
    [clock]        freq_mhz, offset_cycles, drift_ppm       (every PCPU)
    [[clock.pcpu]] index + any of the three above           (one PCPU)
    [dom0]         name, kernel, memory_mib, cpu, cmdline, bvt   (privileged, optional)
    [[domain]]     name, kernel, memory_mib, cpu, count, cmdline, bvt

A config that loads is one the machine can build and run: the ranges are its
real limits, stated with their reason where they are checked (the domain table,
the free pool after the hypervisor's reservation and each domain's extra frames,
the counter range the time code and guests handle, 4 GiB of 32-bit physical
address space); per-domain memory and drift have sanity ranges. Kernel images
are checked by the machine (smpxen.machine.images) before it creates anything.

Only the stdlib is used (tomllib, dataclasses), plus the size of the shared
domain table (smpxen.shm.layout.MAX_DOMAINS).

The package: smpxen/config/schema.py (keys, defaults, limits, the resolved config),
smpxen/config/checks.py (value checks, each naming its key) and
smpxen/config/loading.py (load_config).
"""
from __future__ import annotations

from smpxen.config.loading import load_config
from smpxen.config.schema import (CMDLINE_PLACEHOLDERS, CONSOLE_IO_MODES, MAX_CMDLINE, MAX_CPUS,
                                  MAX_DOMID, MAX_FREQ_MHZ, MAX_OFFSET_CYCLES, MIB,
                                  MIN_CPUS, MIN_FREQ_MHZ, NAME_PLACEHOLDERS, SCHEDULERS, TIME_MODELS,
                                  ClockSpec, ConfigError, DomainSpec, MachineConfig)
from smpxen.shm.layout import MAX_DOMAINS

__all__ = [
    "load_config",
    "ConfigError",
    "MachineConfig",
    "ClockSpec",
    "DomainSpec",
    "MIB",
    "MIN_CPUS",
    "MAX_CPUS",
    "MAX_CMDLINE",
    "MAX_DOMID",
    "MAX_DOMAINS",
    "MIN_FREQ_MHZ",
    "MAX_FREQ_MHZ",
    "MAX_OFFSET_CYCLES",
    "TIME_MODELS",
    "CONSOLE_IO_MODES",
    "SCHEDULERS",
    "CMDLINE_PLACEHOLDERS",
    "NAME_PLACEHOLDERS",
]
