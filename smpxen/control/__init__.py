"""Domain-0's control plane, machine side and client side (Xen 2.0's tools: xend,
libxc and xm, in the small).

    endpoint.py   the control endpoint of `smpxen up`: a ZeroMQ ROUTER socket on the
                  host (ipc://@smpxen-<tag>-control) and the verb table VERBS
    privcmd.py    Domain-0's user space in the machine process: hypercalls made as
                  Domain-0 through the PCPU hosting it (smpxen/pcpu/privcmd.py)
    xc.py         what libxc offers the tools: dom0_op and mmu_update wrappers
    build.py      building a domain the way xc_linux_build does, by hypercalls
    domfile.py    the domain files and options of `xm create`
    verbs.py      the xm verbs (list, info, create, destroy, pause, ...)
    xm.py         the client: `smpxen xm VERB ...`
"""
