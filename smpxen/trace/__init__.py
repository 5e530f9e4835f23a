"""Xen's trace buffers (smpxen/xen/trace.py has the layouts and ids): the ring each
PCPU writes, the reader, xentrace's record file, formats, the common time axis,
the Chrome export, and the commands (smpxen/trace/cli.py)."""
