"""Probe: the first Unicorn instance a process initialises runs the bench's spin
loop slower than the instances after it.

The loop is `smpxen bench`'s raw floor (smpxen/bench/machine.py raw_window: the
mips_window guest's chunk on a bare core, over a window of host time). Each case
runs in a fresh process:
- first:  raw_window twice, the first on the process's first initialised instance;
- spare:  an instance initialised (one register read) and kept, then raw_window.
On the 2-core development host: first instance 2250-2330 MIPS, later instances and
`spare` 2670-2740 (the loop in a PCPU runs at about 2550-2600, paging included),
so a floor measured on a first instance came out below smpxen itself.

    python scripts/probes/first_instance.py

Exits 1 if the first instance is no longer at least 5 % slower than the next."""
import json
import subprocess
import sys

CASE = """
import json, time
from unicorn import Uc, UC_ARCH_X86, UC_MODE_32
from unicorn import x86_const as R
from smpxen.bench.machine import WINDOW_CHUNK, raw_window
spare = None
if {spare}:
    spare = Uc(UC_ARCH_X86, UC_MODE_32)
    spare.reg_read(R.UC_X86_REG_EAX)
rates = []
for _ in range({runs}):
    r = raw_window(time.monotonic_ns() + 300_000_000, 500_000_000)
    rates.append(r["chunks"] * WINDOW_CHUNK * 4 / ((r["end_ns"] - r["begin_ns"]) / 1e9) / 1e6)
print(json.dumps(rates))
"""


def case(spare: bool, runs: int) -> list[float]:
    out = subprocess.run([sys.executable, "-c", CASE.format(spare=spare, runs=runs)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> int:
    firsts, seconds, spares = [], [], []
    for _ in range(3):
        a, b = case(False, 2)
        firsts.append(a)
        seconds.append(b)
        spares.extend(case(True, 1))
    print("first instance MIPS: ", [round(x) for x in firsts])
    print("second instance MIPS:", [round(x) for x in seconds])
    print("after a spare:       ", [round(x) for x in spares])
    return 0 if max(firsts) < 0.95 * min(seconds) else 1


if __name__ == "__main__":
    sys.exit(main())
