"""``neffkit._gc.paused_gc``: the collector is off inside, restored after (errors included),
and what was built inside is not left in the youngest generation for the next collection to
walk."""

from __future__ import annotations

import gc

from neffkit._gc import paused_gc


class _Obj:
    def __init__(self) -> None:
        self.ref = self  # a cycle: tracked by the collector


def test_collector_is_off_inside_and_restored() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()


def test_objects_made_inside_move_to_the_oldest_generation() -> None:
    with paused_gc():
        made = [_Obj() for _ in range(1000)]
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert not any(id(o) in young for o in made)
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(o) in oldest for o in made)


def test_garbage_made_inside_is_still_collected() -> None:
    import weakref

    with paused_gc():
        obj = _Obj()
        ref = weakref.ref(obj)
        del obj
    assert ref() is not None  # a cycle: only the collector frees it
    gc.collect()
    assert ref() is None


def test_a_callers_frozen_objects_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            _Obj()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_an_exception_inside_still_restores_the_collector() -> None:
    class _Boom(Exception):
        pass

    try:
        with paused_gc():
            raise _Boom
    except _Boom:
        pass
    assert gc.isenabled()


def test_pauses_nest() -> None:
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
