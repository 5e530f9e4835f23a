"""The Xen 2.0 x86_32 guest ABI, kept apart from the mechanisms (as Xen keeps
include/public apart from common/ and arch/). Source of every value:
shared/reference/xen2-abi.md (read from the Xen 2.0.0 release)."""
