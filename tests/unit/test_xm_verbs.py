"""Pieces of `smpxen xm`'s verbs (smpxen/control/verbs.py) in this process."""
import types

from hypothesis import given
from hypothesis import strategies as st

from smpxen.control.endpoint import XmError
from smpxen.control.verbs import domain_id

NAMES = {0: "dom0", 3: "web", 7: "12"}


def _session():
    return types.SimpleNamespace(verb="destroy", machine=types.SimpleNamespace(names=lambda: dict(NAMES)))


class _Xc:
    def domain_info(self, domid):
        return object() if domid in NAMES else None


@given(st.text(max_size=12) | st.sampled_from(["03", "12", "\uff13", "\u00b2", " 3", "web"]))
def test_dom_is_an_id_or_a_name_and_anything_else_one_line(text):
    try:
        got = domain_id(_session(), _Xc(), text)
    except XmError as e:
        assert str(e).startswith("destroy: no domain") and "\n" not in str(e)
        return
    assert got in NAMES and (text.isascii() and text.isdigit() and int(text) == got or NAMES[got] == text)


def test_ascii_digits_are_ids_other_digits_are_names():
    assert domain_id(_session(), _Xc(), "3") == 3
    assert domain_id(_session(), _Xc(), "web") == 3
    for text in ("\u00b2", "\u0663", "\uff13"):          # superscript two, Arabic-Indic three, fullwidth three
        try:
            domain_id(_session(), _Xc(), text)
        except XmError as e:
            assert str(e) == f"destroy: no domain named {text!r}"
        else:
            raise AssertionError(text)
