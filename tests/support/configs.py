"""Small machine configs several test modules run or load."""

# One spin guest per PCPU, 200 000 iterations: a run takes a second or two.
SPIN = """
[machine]
cpus = 1
memory_mib = 16
[[domain]]
name = "spin{index}"
kernel = "spin"
count = "per_cpu"
memory_mib = 1
cmdline = "200000"
"""

# Two hello guests on 2 PCPUs (the --set tests change it).
BASE = """
[machine]
cpus = 2
[[domain]]
name = "a"
kernel = "hello"
[[domain]]
name = "b"
kernel = "hello"
cmdline = "x"
"""
