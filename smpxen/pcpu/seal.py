"""The sealed hypervisor area: nothing at or above PAGE_OFFSET (0xFC400000) is
readable from ring 1 or ring 3, although the CPU itself reads descriptor tables
there on every segment load and runs the ring-0 entry trampoline from there.

Xen 2.0 keeps guests out with segment limits (the guest segments end at
0xFC3FFFFF); QEMU does not check limits, and paging cannot tell ring 1 from ring 0
(QEMU gives CPL 0-2 the same MMU index). So every PCPU core serves the sealed
frames (Layout.sealed_mfns) through MMIO with no Unicorn permissions: each access,
explicit or the CPU's own, reaches `Seal.check` (a UC_HOOK_MEM_*_PROT callback,
physical address), and an allowed read is then served by `Seal._read` from machine
RAM. RAM-backed protection would not do: the soft TLB caches a page once any
access was allowed, and translated code then reads it without asking
(scripts/probes/sealed_pages.py shows both behaviours).

The sealed frames: Xen's default GDT, the trampoline, the ring-0 stacks (mapped by
hv_l1 at PAGE_OFFSET), and the PERDOMAIN window. A domain's PERDOMAIN area (its
GDT frames and LDT shadow) maps the domain's own frames, which must stay plain RAM
for its own mappings of them; so each core also serves every PERDOMAIN L1 frame
through MMIO, and to the CPU's page walk entry k of it points at page k of the
window, whose reads come from the frame entry k really holds (in the L1 of the
address space CR3 selects).

What is allowed (everything else is refused):
* anything the hypervisor does itself: the ring-0 trampoline (CPL 0), and
  selector writes from Python (CpuCore.write_reg of CS/SS), which load descriptors
  through the same path;
* at CPL 3: 4-byte reads of descriptor-table pages (the CPU's descriptor reads;
  an explicit ring-3 access to these supervisor pages faults in the MMU first);
* at CPL 1/2: the two 4-byte reads of one descriptor, when the current instruction
  loads a segment (mov/pop/lds.. to a segment register, far jmp/call, retf, iret,
  lar/lsl/verr/verw) and none of its explicit memory operands reaches PAGE_OFFSET:
  the sealed frames are mapped nowhere else, so the read is the CPU's descriptor
  read, not the instruction's own.

A refused access ends emu_start (UC_ERR_*_PROT, EIP at the instruction) and CpuCore
delivers it as #GP(0), what a Xen 2.0 guest gets from its segment limit. Writes
never get here: the sealed pages are mapped read-only with CR0.WP, so a write is
the MMU's #PF; ring-3 accesses are the MMU's #PF (supervisor pages).

Cost: every access to a sealed frame is two Python callbacks (check, read), and
the trampoline runs uncached from MMIO, so guest entries through the trampoline
and guest segment loads are slower; see README (Memory)."""
from __future__ import annotations

import ctypes
import struct

from unicorn import (UC_HOOK_MEM_FETCH_PROT, UC_HOOK_MEM_READ_PROT, UC_HOOK_MEM_WRITE_PROT,
                     UC_PROT_ALL, UC_PROT_NONE)
from unicorn import x86_const as R
from unicorn.unicorn_const import UC_MEM_READ_PROT
from unicorn.unicorn_py3.unicorn import uclib

from smpxen.shm.layout import PERDOMAIN_PAGES, PERDOMAIN_SLOT
from smpxen.xen import arch_x86_32 as A

_MMIO_READ = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64,
                              ctypes.c_uint, ctypes.c_void_p)
_EVENTMEM = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64,
                             ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_u32 = struct.Struct("<I")

# Segment registers in QEMU's order (CPUX86State.segs[]).
ES, CS, SS, DS, FS, GS = range(6)
_SEG_REGS = (R.UC_X86_REG_ES, R.UC_X86_REG_CS, R.UC_X86_REG_SS, R.UC_X86_REG_DS,
             R.UC_X86_REG_FS, R.UC_X86_REG_GS)
_SEG_PREFIX = {0x26: ES, 0x2E: CS, 0x36: SS, 0x3E: DS, 0x64: FS, 0x65: GS}
# Selectors whose descriptor is one of Xen's reserved flat ones (base 0): the
# reserved entries cannot be changed by a guest (update_descriptor refuses them).
_FLAT = frozenset((A.FLAT_RING1_CS, A.FLAT_RING1_DS, A.FLAT_RING3_CS, A.FLAT_RING3_DS))
_GPR = (R.UC_X86_REG_EAX, R.UC_X86_REG_ECX, R.UC_X86_REG_EDX, R.UC_X86_REG_EBX,
        R.UC_X86_REG_ESP, R.UC_X86_REG_EBP, R.UC_X86_REG_ESI, R.UC_X86_REG_EDI)
ESP, EBP = 4, 5
_BATCH = (R.UC_X86_REG_EIP, R.UC_X86_REG_CS, R.UC_X86_REG_SS, R.UC_X86_REG_ESP, R.UC_X86_REG_CR3)
# 16-bit addressing (0x67 prefix): rm -> (base, index), register numbers as _GPR.
_EA16 = ((3, 6), (3, 7), (5, 6), (5, 7), (6, None), (7, None), (5, None), (3, None))

# Decoded forms: what a segment-loading instruction reads explicitly.
NONE, STACK, MEM = "none", "stack", "mem"


# ---- decoding ---------------------------------------------------------------------------
def _modrm(code: bytes, i: int, addr16: bool, seg: int | None):
    """Parse a ModRM memory operand at code[i]; returns (mod, reg, operand) where
    operand = (segment, base, index, scale, disp, addr16) or None for a register."""
    modrm = code[i]
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    i += 1
    if mod == 3:
        return mod, reg, None
    base = index = None
    scale, disp = 1, 0
    if addr16:
        if mod == 0 and rm == 6:
            disp = struct.unpack_from("<h", code, i)[0]
        else:
            base, index = _EA16[rm]
            if mod == 1:
                disp = struct.unpack_from("<b", code, i)[0]
            elif mod == 2:
                disp = struct.unpack_from("<h", code, i)[0]
        default = SS if base == EBP else DS
    else:
        if rm == 4:
            sib = code[i]
            i += 1
            scale, idx, b = 1 << (sib >> 6), (sib >> 3) & 7, sib & 7
            index = None if idx == 4 else idx
            if b == 5 and mod == 0:
                disp = struct.unpack_from("<i", code, i)[0]
            else:
                base = b
        elif rm == 5 and mod == 0:
            disp = struct.unpack_from("<i", code, i)[0]
        else:
            base = rm
        if mod == 1:
            disp = struct.unpack_from("<b", code, i)[0]
        elif mod == 2:
            disp = struct.unpack_from("<i", code, i)[0]
        default = SS if base in (ESP, EBP) else DS
    return mod, reg, (default if seg is None else seg, base, index, scale, disp, addr16)


def decode_segment_load(code: bytes):
    """If `code` starts with an instruction that loads a segment register (and so
    makes the CPU read a descriptor), what it reads explicitly: (NONE,),
    (STACK, nbytes) from SS:ESP, or (MEM, operand, nbytes). None otherwise."""
    try:
        return _decode(code)
    except (IndexError, struct.error):
        return None          # truncated: not an instruction we can vouch for


def _decode(code: bytes):
    i, seg, opsize16, addr16 = 0, None, False, False
    while code[i] in _SEG_PREFIX or code[i] in (0x66, 0x67, 0xF0, 0xF2, 0xF3):
        b = code[i]
        if b in _SEG_PREFIX:
            seg = _SEG_PREFIX[b]
        elif b == 0x66:
            opsize16 = True
        elif b == 0x67:
            addr16 = True
        i += 1
        if i >= 14:
            return None
    w = 2 if opsize16 else 4
    op = code[i]
    i += 1
    if op in (0x07, 0x17, 0x1F):                  # pop es/ss/ds
        return STACK, w
    if op in (0x9A, 0xEA):                        # lcall/ljmp ptr16:32
        return (NONE,)
    if op == 0xCB:                                # retf (+ ESP, SS for an outer ring)
        return STACK, 4 * w
    if op == 0xCA:                                # retf imm16
        return STACK, 4 * w + struct.unpack_from("<H", code, i)[0]
    if op == 0xCF:                                # iret (+ ESP, SS for an outer ring)
        return STACK, 5 * w
    if op == 0x8E:                                # mov sreg, r/m16
        mod, reg, mem = _modrm(code, i, addr16, seg)
        if reg in (CS, 6, 7):
            return None                           # #UD
        return (NONE,) if mem is None else (MEM, mem, 2)
    if op in (0xC4, 0xC5):                        # les/lds
        mod, reg, mem = _modrm(code, i, addr16, seg)
        return None if mem is None else (MEM, mem, w + 2)
    if op == 0xFF:                                # lcall/ljmp m16:32
        mod, reg, mem = _modrm(code, i, addr16, seg)
        return (MEM, mem, w + 2) if reg in (3, 5) and mem is not None else None
    if op != 0x0F:
        return None
    op2 = code[i]
    i += 1
    if op2 in (0xA1, 0xA9):                       # pop fs/gs
        return STACK, w
    if op2 in (0xB2, 0xB4, 0xB5):                 # lss/lfs/lgs
        mod, reg, mem = _modrm(code, i, addr16, seg)
        return None if mem is None else (MEM, mem, w + 2)
    if op2 in (0x02, 0x03) or op2 == 0x00 and (code[i] >> 3) & 7 in (4, 5):
        mod, reg, mem = _modrm(code, i, addr16, seg)   # lar/lsl, verr/verw r/m16
        return (NONE,) if mem is None else (MEM, mem, 2)
    return None


# ---- the window and its check --------------------------------------------------------------
class Seal:
    """Maps machine RAM into one core with the sealed frames behind checked MMIO."""

    def __init__(self, core):
        self.core = core
        uc, ram, layout = core.uc, core.ram, core.layout
        self.mem = ram.mem
        sealed = layout.sealed_mfns
        self.lo, self.hi = sealed.start << 12, sealed.stop << 12
        self.gdt_pfn = layout.gdt_mfn
        self.window_pa = layout.window_mfn << 12
        self.window_pfn = layout.window_mfn
        self.nr_frames = layout.nr_frames
        self.guest = False             # True while guest instructions run (CpuCore.run)
        self.refused = None            # (access, physical address, size, cpl)
        self.counts = {"refused": 0}
        self._token = None             # physical address of a descriptor's 2nd word
        self._decoded = {}             # instruction bytes -> decode_segment_load(...) or ()
        self._views = set()            # PERDOMAIN L1 frames served through MMIO
        self._ctx = None               # preallocated uc_context for segment bases (calibrate)
        self._seg_off = None
        h = self._h = uc._uch
        self._c_read = uclib.uc_reg_read
        self._u32 = ctypes.c_uint32()
        self._u32_ref = ctypes.byref(self._u32)
        self._c_read_batch = uclib.uc_reg_read_batch
        self._batch_ids = (ctypes.c_int * len(_BATCH))(*_BATCH)
        self._batch_vals = (ctypes.c_uint32 * len(_BATCH))()
        base = ctypes.addressof(self._batch_vals)
        self._batch_ptrs = (ctypes.c_void_p * len(_BATCH))(*[base + 4 * i for i in range(len(_BATCH))])
        self._read_cb = _MMIO_READ(self._read)
        self._view_cb = _MMIO_READ(self._view)
        self._check_cb = _EVENTMEM(self.check)
        # The domains are built before the PCPUs start: map RAM around their PERDOMAIN
        # L1s in one pass (splitting a mapping later costs ~10 ms each).
        from smpxen.shm.domains import DomainTable
        views = sorted({info.perdomain_pt_mfn for info in DomainTable(ram, layout).slots
                        if info.state and info.perdomain_pt_mfn})
        holes = [(self.lo, self.hi)] + [(m << 12, (m + 1) << 12) for m in views]
        pieces, pa = [], 0
        for start, end in sorted(holes):
            pieces.append((pa, start))
            pa = end
        pieces.append((pa, ram.size))
        # Biggest first: until a block has been freed, Unicorn 2.1.4 places a new
        # RAMBlock after the list's last (smallest) block, so a smaller block mapped
        # before a bigger one gets RAM offsets that overlap, and translated code of
        # one frame is then found for another (find_ram_offset_last in qemu/exec.c).
        for start, end in sorted(pieces, key=lambda p: p[0] - p[1]):
            self._map_ram(start, end)
        self._mmio(self.lo, self.hi - self.lo, self._read_cb)
        for mfn in views:
            self._mmio(mfn << 12, 0x1000, self._view_cb, ctypes.c_void_p(mfn << 12))
            self._views.add(mfn)
        hook = ctypes.c_size_t()
        for kind in (UC_HOOK_MEM_READ_PROT, UC_HOOK_MEM_FETCH_PROT, UC_HOOK_MEM_WRITE_PROT):
            # All addresses: only the sealed frames and the views lack permissions.
            err = uclib.uc_hook_add(h, ctypes.byref(hook), kind,
                                    ctypes.cast(self._check_cb, ctypes.c_void_p), None,
                                    ctypes.c_uint64(1), ctypes.c_uint64(0))
            if err:
                raise RuntimeError(f"uc_hook_add for the seal failed ({err})")

    def _map_ram(self, start: int, end: int) -> None:
        if end > start:
            self.core.uc.mem_map_ptr(start, end - start, UC_PROT_ALL, self.core.ram.address + start)

    def _mmio(self, pa: int, size: int, read_cb, data=None) -> None:
        """Map [pa, pa + size) as MMIO read through read_cb, with no permissions, so
        that every CPU access reaches check (page walks read it unchecked)."""
        err = uclib.uc_mmio_map(self._h, ctypes.c_uint64(pa), ctypes.c_size_t(size), read_cb,
                                data, None, None)
        if err:
            raise RuntimeError(f"uc_mmio_map at {pa:#x} failed ({err})")
        self.core.uc.mem_protect(pa, size, UC_PROT_NONE)

    # ---- the PERDOMAIN window ------------------------------------------------------------
    def watch(self, cr3: int) -> None:
        """An address space is loaded: make sure its PERDOMAIN L1 is served as a view
        (a domain built after this core started; normally all are seen at start)."""
        pde = _u32.unpack_from(self.mem, (cr3 & ~0xFFF) + (PERDOMAIN_SLOT << 2))[0]
        if pde & A._PAGE_PRESENT and pde >> 12 not in self._views and pde >> 12 < self.nr_frames:
            self._add_view(pde >> 12)

    def _add_view(self, l1_mfn: int) -> None:
        pa = l1_mfn << 12
        self.core.uc.mem_unmap(pa, 0x1000)        # split out of the RAM mapping
        self._mmio(pa, 0x1000, self._view_cb, ctypes.c_void_p(pa))
        self._views.add(l1_mfn)
        # The split gives the RAM around the page new blocks, whose RAM offsets may be
        # ones other physical pages had: code translated before would then run for
        # the wrong page (docs/design.md, invariant 8). A domain built at run time ran
        # another kernel's code this way (tests/machine/test_control.py).
        self.core.flush_translations()

    def _view(self, _uc, offset, size, data):
        """A page-walk read of a PERDOMAIN L1: entry k, if present, points at window
        page k instead of the frame it holds."""
        pa = data + offset
        e = _u32.unpack_from(self.mem, pa & ~3)[0]
        k = (pa & 0xFFF) >> 2
        if e & A._PAGE_PRESENT:
            e = ((self.window_pfn + k) << 12) | (e & 0xFFF) if k < PERDOMAIN_PAGES else 0
        return (e >> ((pa & 3) * 8)) & ((1 << (8 * size)) - 1)

    def _window_frame(self, k: int) -> int | None:
        """The frame in entry k of the PERDOMAIN L1 of the current address space."""
        self._c_read(self._h, R.UC_X86_REG_CR3, self._u32_ref)
        pde = _u32.unpack_from(self.mem, (self._u32.value & ~0xFFF) + (PERDOMAIN_SLOT << 2))[0]
        if not pde & A._PAGE_PRESENT:
            return None
        pte = _u32.unpack_from(self.mem, (pde & ~0xFFF) + (k << 2))[0]
        return pte >> 12 if pte & A._PAGE_PRESENT and pte >> 12 < self.nr_frames else None

    def _read(self, _uc, offset, size, _data):
        pa = self.lo + offset
        if pa >= self.window_pa:
            frame = self._window_frame((pa - self.window_pa) >> 12)
            if frame is None:
                return 0             # unmapped since the walk: mm flushes before it reruns
            pa = (frame << 12) | (pa & 0xFFF)
        if size == 4:
            return _u32.unpack_from(self.mem, pa)[0]
        return int.from_bytes(self.mem[pa:pa + size], "little")

    def check(self, _uc, access, pa, size, _value, _data) -> bool:
        """The PROT hook: may this access to a sealed frame proceed? (Hot: it runs
        for every access the trampoline and guest segment loads make.)"""
        if not self.guest:
            return True                       # the hypervisor's own selector writes
        self._c_read(self._h, R.UC_X86_REG_CS, self._u32_ref)
        cpl = self._u32.value & 3
        if cpl == 0:
            return True                       # the trampoline (guests never run in ring 0)
        token, self._token = self._token, None
        if access == UC_MEM_READ_PROT and size == 4 and self._descriptor_page(pa >> 12):
            if cpl == 3:
                return True                   # explicit ring-3 reads fault in the MMU
            if pa & 7 == 4:
                if token == pa:               # the second word of the descriptor just read
                    return True
            elif pa & 7 == 0 and self._implicit():
                self._token = pa + 4
                return True
        self.refused = (access, pa, size, cpl)
        self.counts["refused"] += 1
        return False

    def _descriptor_page(self, pfn: int) -> bool:
        return pfn == self.gdt_pfn or 0 <= pfn - self.window_pfn < PERDOMAIN_PAGES

    def take_refusal(self):
        refused, self.refused = self.refused, None
        return refused

    # ---- is this ring-1 read the CPU's own descriptor read? -------------------------------
    def _implicit(self) -> bool:
        """The current instruction loads a segment and reads nothing explicitly at or
        above PAGE_OFFSET."""
        self._c_read_batch(self._h, self._batch_ids, self._batch_ptrs, len(_BATCH))
        eip, cs, ss, esp, cr3 = self._batch_vals
        bases = None
        if cs & 0xFFFF not in _FLAT:
            bases = self.segment_bases()
            eip = (bases[CS] + eip) & 0xFFFFFFFF
        code = self._code(cr3, eip)
        form = self._decoded.get(code)
        if form is None:
            if len(self._decoded) >= 4096:
                self._decoded.clear()
            form = self._decoded[code] = decode_segment_load(code) or ()
        if not form:
            return False
        kind = form[0]
        if kind == NONE:
            return True
        if kind == STACK:
            seg, n, start = SS, form[1], esp
        else:
            (seg, base, index, scale, disp, addr16), n = form[1], form[2]
            start = disp
            if base is not None:
                start += self._reg(_GPR[base])
            if index is not None:
                start += self._reg(_GPR[index]) * scale
            start &= 0xFFFF if addr16 else 0xFFFFFFFF
        if bases is None:
            sel = ss if seg == SS else self._reg(_SEG_REGS[seg])
            if sel & 0xFFFF not in _FLAT:
                bases = self.segment_bases()
        if bases is not None:
            start += bases[seg]
        return start + n <= A.PAGE_OFFSET      # no wrap-around, nothing in the hypervisor area

    def _reg(self, reg: int) -> int:
        self._c_read(self._h, reg, self._u32_ref)
        return self._u32.value

    def _code(self, cr3: int, va: int) -> bytes:
        """Up to 15 instruction bytes at va through the page tables at cr3 (fewer if
        the next page is not mapped, none at or above the M2P table)."""
        out = b""
        mem, nr = self.mem, self.nr_frames
        while len(out) < 15 and va < A.MACH2PHYS_VIRT_START:
            pde = _u32.unpack_from(mem, (cr3 & ~0xFFF) | (va >> 20 & 0xFFC))[0]
            if not pde & A._PAGE_PRESENT or pde >> 12 >= nr:
                break
            pte = _u32.unpack_from(mem, (pde & ~0xFFF) | (va >> 10 & 0xFFC))[0]
            if not pte & A._PAGE_PRESENT or pte >> 12 >= nr:
                break
            ma = (pte & ~0xFFF) | (va & 0xFFF)
            n = min(15 - len(out), 0x1000 - (va & 0xFFF))
            out += mem[ma:ma + n]
            va += n
        return out

    # ---- segment bases, from the CPU state --------------------------------------------------
    def calibrate(self) -> None:
        """Once the core's ring-0 registers are set: find the segment caches in a
        saved context (for segment_bases)."""
        self._ctx = ctypes.c_void_p()
        if uclib.uc_context_alloc(self.core.uc._uch, ctypes.byref(self._ctx)):
            raise RuntimeError("uc_context_alloc failed")
        self._seg_off = self._find_segments()

    def segment_bases(self) -> list[int]:
        """The six segment bases QEMU holds (CPUX86State.segs[].base), read from a
        context saved into a preallocated buffer."""
        uclib.uc_context_save(self.core.uc._uch, self._ctx)
        return [ctypes.c_uint64.from_address(self._ctx.value + self._seg_off + 24 * i + 8).value
                & 0xFFFFFFFF for i in range(6)]

    def _find_segments(self) -> int:
        """Offset of segs[] in a saved context: six 24-byte SegmentCache records
        (selector u32, pad, base u64, limit u32, flags u32) holding the selectors the
        core reports, followed by ldt, tr and gdt whose base is GDTR's. Checked by
        writing FS's base there and reading it back through the API."""
        core, h = self.core, self.core.uc._uch
        uclib.uc_context_save(h, self._ctx)
        raw = ctypes.string_at(self._ctx.value, 4096)
        sels = [core.read_reg(r) & 0xFFFF for r in _SEG_REGS]
        gdt_base = core.gdtr()[0]
        found = [off for off in range(0, 4096 - 24 * 9, 8)
                 if [_u32.unpack_from(raw, off + 24 * i)[0] for i in range(6)] == sels
                 and struct.unpack_from("<Q", raw, off + 24 * 8 + 8)[0] == gdt_base]
        if len(found) == 1:
            fs_base = ctypes.c_uint64.from_address(self._ctx.value + found[0] + 24 * FS + 8)
            old, fs_base.value = fs_base.value, 0x5EA1000
            uclib.uc_context_restore(h, self._ctx)
            seen = self._reg(R.UC_X86_REG_FS_BASE)
            fs_base.value = old
            uclib.uc_context_restore(h, self._ctx)
            if seen == 0x5EA1000 and self._reg(R.UC_X86_REG_FS_BASE) == old:
                return found[0]
        raise RuntimeError(f"cannot locate the segment caches in a Unicorn context "
                           f"(candidates {found}); this Unicorn build is not supported")
