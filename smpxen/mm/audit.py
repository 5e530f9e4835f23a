"""Audit (Xen's audit_domain): recount every reference of a domain's frames from its
tables and report what differs; the tests run it after hostile guests."""
from __future__ import annotations

from smpxen.mm.constants import DOMAIN_SLOTS, L1_DISALLOW
from smpxen.shm.frametable import (PGC_allocated, PGC_count_mask, PGT_count_mask, PGT_gdt_page,
                                   PGT_l1_page_table, PGT_l2_page_table, PGT_ldt_page, PGT_pinned,
                                   PGT_type_mask, PGT_validated, PGT_writable_page)
from smpxen.xen import arch_x86_32 as A


class Audit:
    """Mixin of MM (smpxen/mm/memory.py): consistency checks."""

    # ---- audit -----------------------------------------------------------------------------
    def audit(self, d: int, baseptrs=(), held=None) -> list[str]:
        """Recount every reference of domain d's frames from its tables (Xen's
        audit_domain) and report each frame whose counts differ, and any rule a
        validated table breaks. `held` maps mfn -> (general, type) references the
        caller holds outside any table."""
        problems = []
        owned = [m for m in range(self.hv_frames, self.nr_frames) if self.frames[m].owner == d]
        exp_c = {m: 0 for m in owned}
        exp_t = {m: 0 for m in owned}

        def ref(m, typed, why):
            if m not in exp_c:
                problems.append(f"{why} references frame {m:#x} not owned by d{d}")
                return
            exp_c[m] += 1
            exp_t[m] += typed

        for m in owned:
            f = self.frames[m]
            exp_c[m] += 1 if f.count_info & PGC_allocated else 0
            if f.type_info & PGT_pinned:
                exp_c[m] += 1
                exp_t[m] += 1
        for m in owned:
            t = self.frames[m].type_info
            if not t & PGT_count_mask:
                continue
            kind = t & PGT_type_mask
            if kind in (PGT_l1_page_table, PGT_l2_page_table, PGT_gdt_page, PGT_ldt_page) \
                    and not t & PGT_validated:
                problems.append(f"frame {m:#x} typed {kind >> 29} in use but not validated")
            if kind == PGT_l1_page_table:
                for i, e in enumerate(self.read_table(m)):
                    if not e & A._PAGE_PRESENT:
                        continue
                    if e & L1_DISALLOW:
                        problems.append(f"L1 {m:#x}[{i}] has disallowed flags {e:#x}")
                    tgt = e >> 12
                    ref(tgt, 1 if e & A._PAGE_RW else 0, f"L1 {m:#x}[{i}]")
                    if e & A._PAGE_RW and tgt in exp_c and \
                            self.frames[tgt].type_info & PGT_type_mask != PGT_writable_page:
                        problems.append(f"L1 {m:#x}[{i}] maps non-writable-typed {tgt:#x} RW")
            elif kind == PGT_l2_page_table:
                for i, e in enumerate(self.read_table(m)[:DOMAIN_SLOTS]):
                    if not e & A._PAGE_PRESENT or e >> 12 == m:
                        continue
                    tgt = e >> 12
                    ref(tgt, 1, f"L2 {m:#x}[{i}]")
                    tk = self.frames[tgt].type_info & PGT_type_mask if self.is_ram(tgt) else None
                    if tk == PGT_l2_page_table and e & A._PAGE_RW:
                        problems.append(f"L2 {m:#x}[{i}] is a writable linear mapping")
                    elif tk not in (PGT_l1_page_table, PGT_l2_page_table):
                        problems.append(f"L2 {m:#x}[{i}] maps a frame that is no page table")
        for m in baseptrs:
            ref(m, 1, "base pointer")
        for m in self.gdt_frames(d):
            ref(m, 1, "GDT")
        for m in self.ldt_shadow_frames(d):
            ref(m, 1, "LDT shadow")
        for m, (c, t) in (held or {}).items():
            if m in exp_c:
                exp_c[m] += c
                exp_t[m] += t
        for m in owned:
            f = self.frames[m]
            if f.count_info & PGC_count_mask != exp_c[m]:
                problems.append(f"frame {m:#x}: count {f.count_info & PGC_count_mask} != {exp_c[m]}")
            if f.type_info & PGT_count_mask != exp_t[m]:
                problems.append(f"frame {m:#x}: type count {f.type_info & PGT_count_mask} != {exp_t[m]}")
        return problems
