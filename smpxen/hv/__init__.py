"""The hypervisor proper: hypercall handlers and guest-memory access. Handlers run
on the PCPU that runs the calling domain, between or inside its emulation slices."""
