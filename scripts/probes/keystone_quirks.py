"""Probe: keystone-engine (x86-32, Intel syntax) quirks the bundled guests work around
(smpxen/guests/asm/*.s, smpxen/shm/boot.py).

1. `pop es` / `pop ds` (and `push es` / `push ds`) get a 0x66 operand-size prefix:
   16-bit pops. Write `.byte 0x07` / `.byte 0x1f`.
2. `[label + SYMBOL]` with SYMBOL an assembler constant silently drops the label
   (the operand becomes [SYMBOL]); a literal number or `[reg + SYMBOL]` is fine.
3. `push offset label` is refused, and `push label` assembles a 16-bit push
   (0x66 0x68 imm16). Write `mov eax, label` / `push eax`.
4. Source must be ASCII: the binding encodes it as ASCII and raises on anything else.
5. Macros work for straight-line code, but not with a label inside: a numeric
   local label is refused, and a `\\@` label makes every expansion vanish
   silently. The guests use no macros.

    python scripts/probes/keystone_quirks.py

Exits 1 naming a quirk that is gone (then the workaround may be dropped)."""
import sys

from keystone import KS_ARCH_X86, KS_MODE_32, Ks, KsError

BASE = 0x1000
ks = Ks(KS_ARCH_X86, KS_MODE_32)


def assemble(src: str):
    """The bytes, or the error's class name."""
    try:
        return bytes(ks.asm(src, BASE)[0])
    except KsError as e:
        return f"KsError({e.errno})"
    except UnicodeError as e:
        return type(e).__name__


def main() -> int:
    checks = []        # (quirk, still present?, what was seen)
    pops = {s: assemble(s) for s in ("pop es", "pop ds", "push es", "push ds")}
    checks.append(("pop/push es/ds get a 0x66 prefix", all(b[:1] == b"\x66" for b in pops.values()),
                   " ".join(f"{s}={b.hex()}" for s, b in pops.items())))

    # lab is at BASE + 6 (after a 5-byte `mov eax, [moffs]` and a nop), so the
    # operand should be BASE + 6 + 8.
    with_equ = assemble("OFF = 8\n mov eax, dword ptr [lab + OFF]\n nop\nlab: nop")
    literal = assemble("mov eax, dword ptr [lab + 8]\n nop\nlab: nop")
    via_reg = assemble("OFF = 8\n mov eax, dword ptr [ebx + OFF]")
    want = (BASE + 6 + 8).to_bytes(4, "little")
    checks.append(("[label + EQU] drops the label",
                   with_equ[1:5] == (8).to_bytes(4, "little") and literal[1:5] == want and via_reg == b"\x8b\x43\x08",
                   f"[lab+OFF] -> {with_equ[1:5].hex()}, [lab+8] -> {literal[1:5].hex()}, "
                   f"[ebx+OFF] -> {via_reg.hex()}"))

    offset = assemble("push offset lab\nlab: nop")
    plain = assemble("push lab\nlab: nop")
    checks.append(("push offset refused, push label is 16-bit",
                   isinstance(offset, str) and plain[:2] == b"\x66\x68",
                   f"push offset lab -> {offset}, push lab -> {plain.hex() if isinstance(plain, bytes) else plain}"))

    accented = assemble("nop ; caf\u00e9")
    checks.append(("non-ASCII source refused", isinstance(accented, str), f"non-ASCII source -> {accented}"))

    straight = assemble(".macro two\n inc eax\n inc ebx\n.endm\n two\n two\n hlt")
    numeric = assemble(".macro spin\n1: jmp 1b\n.endm\n spin\n hlt")
    unique = assemble(".macro spin\nx\\@: jmp x\\@\n.endm\n spin\n spin\n hlt")
    checks.append(("macros with labels fail",
                   straight == b"\x40\x43\x40\x43\xf4" and isinstance(numeric, str) and unique == b"\xf4",
                   f"straight-line macro x2 -> {straight.hex() if isinstance(straight, bytes) else straight}, "
                   f"numeric label -> {numeric}, \\@ label x2 -> "
                   f"{unique.hex() if isinstance(unique, bytes) else unique}"))

    print("; ".join(seen for _q, _p, seen in checks[:3]))
    print("; ".join(seen for _q, _p, seen in checks[3:]))
    gone = [q for q, present, _s in checks if not present]
    for q in gone:
        print("FACT NO LONGER HOLDS:", q)
    return 1 if gone else 0


if __name__ == "__main__":
    sys.exit(main())
