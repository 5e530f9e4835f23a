"""Xen's memory management (xen/arch/x86/memory.c), as pure logic over the shared
frame table: reference counts, page types, validation of page tables and
descriptor pages, the TLB-flush clock. Hypercall handlers (smpxen.hv) and the
domain builder drive it; every mutation happens under Locks.mm."""
