"""The decode budget hands freed heap back when it drains after enough decoding, and after each large decode."""

from __future__ import annotations

from model.decode_budget import PEAK_FACTOR, TRIM_AFTER_BYTES, DecodeBudget


def decoded_for(reserved: int) -> int:
    """The decoded bytes whose reservation is `reserved` bytes."""
    return -(-reserved // PEAK_FACTOR)


def test_the_heap_is_trimmed_once_the_budget_drains_after_mid_sized_decodes_totalling_the_threshold():
    trims = []
    budget = DecodeBudget(budget_bytes=10 * TRIM_AFTER_BYTES, release=lambda: trims.append(budget.in_use))
    third = decoded_for(TRIM_AFTER_BYTES // 2)
    with budget.reserve(third):
        with budget.reserve(third):
            with budget.reserve(third):
                pass
            assert trims == [], "not while decodes still hold memory, and none was large alone"
    assert trims == [0], "trimmed once, when the budget drained"
    with budget.reserve(third):
        pass
    assert trims == [0], "half the threshold since the last trim: not yet"
    with budget.reserve(third):
        pass
    assert trims == [0, 0]


def test_a_large_decode_trims_as_it_ends_even_beside_others():
    trims = []
    budget = DecodeBudget(budget_bytes=10 * TRIM_AFTER_BYTES, release=lambda: trims.append(budget.in_use))
    small = decoded_for(TRIM_AFTER_BYTES // 8)
    with budget.reserve(small):
        with budget.reserve(decoded_for(TRIM_AFTER_BYTES)):
            pass
        assert len(trims) == 1 and trims[0] > 0


def test_the_heap_arenas_can_be_limited_where_the_c_library_is_glibc():
    """In a child process: the limit holds for the rest of a process, and the test process's allocator stays as it is."""
    import platform
    import subprocess
    import sys

    code = "from model.decode_budget import limit_heap_arenas; print(limit_heap_arenas(2))"
    took = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert took == str(platform.libc_ver()[0] == "glibc")
