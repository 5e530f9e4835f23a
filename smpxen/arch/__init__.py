"""x86-32 architecture facts the hypervisor relies on (not Xen ABI)."""
