"""The Xen 2.0 x86_32 guest ABI, kept apart from the mechanisms (as Xen keeps
include/public apart from common/ and arch/). Every value was read from the Xen
2.0.0 release's public headers, which each module names."""
