"""Pausing Python's cyclic garbage collector during bulk object creation.

Loading or exporting a 100k-node graph allocates millions of objects that all stay alive;
the collector would rescan them again and again (about half of the load time, measured).
When the pause ends, the objects made inside it are moved straight to the oldest generation:
left in the youngest, the first collection after the pause would walk all of them (half a
second at 100k nodes, measured), and so would the next two generations' first collections.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disables the cyclic collector inside the block (restores its previous state).

    On exit the objects still tracked are promoted to the oldest generation (``gc.freeze``
    then ``gc.unfreeze``: two list splices, no walk) unless the caller froze objects itself, so
    that later young-generation collections do not rescan them. Garbage among them is still
    found by the next full collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
