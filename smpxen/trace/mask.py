"""Xen's trace event mask as users write it: a number (0x00020000, 131072) or
class names joined with ',' or '|' ("sched,ipi"); every class is in
smpxen/xen/trace.py CLASSES ("all" is TRC_ALL). An event is recorded when
mask & event != 0."""
from __future__ import annotations

import re

from smpxen.xen.trace import CLASSES

DEFAULT_MASK = "all"


class MaskError(ValueError):
    pass


def parse_mask(value) -> int:
    """The mask as a 32-bit number; MaskError (one line) if it is not one."""
    if isinstance(value, bool):
        raise MaskError(f"expected a number or class names, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise MaskError("empty mask")
        try:
            number = int(text, 0)
        except ValueError:
            number = 0
            for name in re.split(r"[,|]", text):
                name = name.strip().lower()
                if name not in CLASSES:
                    raise MaskError(f"unknown class {name!r} (classes: {', '.join(CLASSES)}; "
                                    f"or a number such as 0x00020000)") from None
                number |= CLASSES[name]
    else:
        raise MaskError(f"expected a number or class names, got {type(value).__name__}")
    if not 0 <= number <= 0xFFFFFFFF:
        raise MaskError(f"{value!r} is not a 32-bit mask")
    if number == 0:
        raise MaskError("mask 0 records nothing (leave tracing off instead)")
    return number


def describe_mask(mask: int) -> str:
    """"sched|ipi" for a mask made of whole classes, else its hex."""
    if mask == CLASSES["all"]:
        return "all"
    names = [n for n, bit in CLASSES.items() if n != "all" and mask & bit == bit]
    covered = 0
    for n in names:
        covered |= CLASSES[n]
    return "|".join(names) if names and covered == mask else f"{mask:#010x}"
