"""smpxen: an x86-32 SMP machine running a Xen 2.0-style paravirtualising hypervisor.

Data flows one way: cli -> machine -> pcpu loop -> hv (hypercall handlers) -> shm (RAM, frame table).
The Xen guest ABI (numbers, layouts, flags, errno) lives in smpxen.xen, apart from the mechanisms.
"""
__version__ = "0.1.0"
