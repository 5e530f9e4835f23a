"""The bundled C guest (smpxen/guests/c): built by scripts/build_c_guest.sh, loaded
by the ELF loader, run on a bare Unicorn core."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from smpxen.guests.elf import load_elf

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_c_guest.sh"


def _gcc_m32_reason(tmp_path: Path) -> str | None:
    """None if `gcc -m32` can build a freestanding program, else why not."""
    if shutil.which("gcc") is None:
        return "gcc not found"
    src = tmp_path / "probe.c"
    src.write_text("void _start(void) { for (;;) ; }\n")
    r = subprocess.run(["gcc", "-m32", "-ffreestanding", "-nostdlib", "-static", "-no-pie",
                        str(src), "-o", str(tmp_path / "probe")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "gcc -m32 cannot compile/link 32-bit code: " + (r.stderr.strip()
                                                              .splitlines() or ["?"])[-1]
    return None


@pytest.fixture(scope="module")
def c_guest(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cguest")
    reason = _gcc_m32_reason(tmp)
    if reason:
        pytest.skip(reason)
    out = tmp / "out" / "hello.elf"
    r = subprocess.run(["bash", str(BUILD_SCRIPT), str(out)], cwd="/",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.is_file()
    return out


def test_c_guest_loads(c_guest):
    img = load_elf(c_guest)
    assert img.virt_base == 0xC0000000
    assert img.entry == 0xC0000000             # guest.ld puts _start first
    assert img.guest_params == {"GUEST_OS": "linux", "XEN_VER": "2.0",
                                "VIRT_BASE": "0xC0000000", "LOADER": "generic"}
    assert img.vstart == 0xC0000000
    assert len(img.segments) == 2
    text, data = img.segments
    assert text.vaddr == 0xC0000000 and text.data[:1] == b"\xfc"   # cld
    assert b"hello from C guest: " in text.data       # rodata is in a loadable segment
    assert data.vaddr >= text.vaddr + text.memsz and data.vaddr % 4096 == 0
    assert data.memsz >= 8192                          # the static stack in .bss
    assert img.vend - img.virt_base < (1 << 20)


def test_build_script_default_output_and_cwd(tmp_path):
    if _gcc_m32_reason(tmp_path):
        pytest.skip("gcc -m32 unavailable")
    # Runs from an unrelated cwd; relative OUT is relative to that cwd.
    r = subprocess.run(["bash", str(BUILD_SCRIPT), "rel/hello.elf"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert load_elf(tmp_path / "rel" / "hello.elf").entry == 0xC0000000


def test_build_script_reports_missing_m32(tmp_path):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho \"fakecc: error: unrecognized command-line option '-m32'\" >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(BUILD_SCRIPT), str(tmp_path / "x.elf")],
                       env={"PATH": "/usr/bin:/bin", "CC": str(fake)},
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "cannot build 32-bit x86 code" in r.stderr
    assert not (tmp_path / "x.elf").exists()


def test_c_guest_runs_under_unicorn(c_guest):
    """Smoke-run the guest on a bare Unicorn core (flat segments, no paging):
    enough to check the entry path, the hypercall ABI use and the output. The
    real start-of-day (ring 1, page tables) is the machine's job."""
    unicorn = pytest.importorskip("unicorn")
    from unicorn import x86_const as X

    img = load_elf(c_guest)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    base = img.virt_base
    size = (img.vend - base + 0xFFF) & ~0xFFF
    si_va = base + size                       # start_info page after the image
    stack_top = si_va + 0x2000                 # bootstrap stack page
    uc.mem_map(base, size + 0x2000)
    for s in img.segments:
        uc.mem_write(s.vaddr, s.data + bytes(s.memsz - len(s.data)))
    cmdline = b"root=/dev/null console=xen"
    si = struct.pack("<II", 4321, 0) + bytes(56) + cmdline + b"\0"
    uc.mem_write(si_va, si)

    console = bytearray()
    calls = []

    def on_intr(uc, intno, _ud):
        assert intno == 0x82, f"unexpected interrupt {intno:#x}"
        eax, ebx, ecx, edx = (uc.reg_read(r) for r in
                              (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX,
                               X.UC_X86_REG_ECX, X.UC_X86_REG_EDX))
        calls.append((eax, ebx))
        ret = 0
        if eax == 18 and ebx == 0:            # console_io(CONSOLEIO_write, count, buf)
            console.extend(uc.mem_read(edx, ecx))
            ret = ecx
        elif eax == 6 and (ebx & 0xFF) == 2:  # sched_op(SCHEDOP_shutdown | reason<<8)
            uc.emu_stop()
        # clobber the argument registers as Xen may
        for r in (X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX,
                  X.UC_X86_REG_ESI, X.UC_X86_REG_EDI):
            uc.reg_write(r, 0xDEADBEEF)
        uc.reg_write(X.UC_X86_REG_EAX, ret)

    def on_cpuid(uc, _ud):
        leaf = uc.reg_read(X.UC_X86_REG_EAX)
        uc.reg_write(X.UC_X86_REG_EAX, 0x600 if leaf == 1 else 0)
        uc.reg_write(X.UC_X86_REG_EBX, (3 << 24) if leaf == 1 else 0)
        uc.reg_write(X.UC_X86_REG_ECX, 0)
        uc.reg_write(X.UC_X86_REG_EDX, 0)
        return True                            # skip the real CPUID

    uc.hook_add(unicorn.UC_HOOK_INTR, on_intr)
    uc.hook_add(unicorn.UC_HOOK_INSN, on_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
    uc.reg_write(X.UC_X86_REG_ESI, si_va)
    uc.reg_write(X.UC_X86_REG_ESP, stack_top)
    uc.emu_start(img.entry, 0, count=100_000)

    assert console.decode() == (
        "hello from C guest: root=/dev/null console=xen on pcpu 3\n"
        "nr_pages=4321\n")
    assert calls[-1] == (6, 2 | (0 << 8))      # shutdown, SHUTDOWN_poweroff
