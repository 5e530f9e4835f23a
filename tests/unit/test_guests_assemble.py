"""Every bundled assembly guest (smpxen/guests/asm/) assembles."""
import pytest

from smpxen.guests.assemble import assemble_guest


@pytest.mark.parametrize("name", sorted(__import__("smpxen.guests.assemble", fromlist=["x"]).bundled_guest_names()))
def test_every_bundled_guest_assembles(name):
    image = assemble_guest(name)
    assert image.entry == image.virt_base and len(image.segments[0].data) > 0
