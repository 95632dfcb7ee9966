"""`ServerMachine.snapshot` writes msgpack `[applied, {part: bytes}]` by joining the parts' bytes
once (packb copied a 200 MB scheduler snapshot twice more); the bytes must stay exactly what
`msgpack.packb` writes, so snapshots taken before and after the change restore alike."""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest

from scheduler.server.machine import ServerMachine


class Blob:
    """A part whose snapshot is given bytes, and which remembers what it restored."""

    def __init__(self, data: bytes) -> None:
        self.data, self.restored = data, b""

    def apply(self, index: int, data: bytes) -> None:
        return None

    def snapshot(self) -> bytes:
        return self.data

    def restore(self, data: bytes) -> None:
        self.restored = data


@pytest.mark.parametrize("sizes", [[0], [255, 256], [65535, 65536, 1], [3] * 16, [70000] * 17])
@pytest.mark.parametrize("applied", [0, 127, 128, 2**16, 2**40])
def test_snapshot_is_byte_for_byte_packb(sizes: list[int], applied: int) -> None:
    parts = {f"p{k:02d}": Blob(bytes([k]) * size) for k, size in enumerate(sizes)}
    machine = ServerMachine(parts)  # type: ignore[arg-type]
    machine.applied = applied
    expected = msgpack.packb([applied, {n: p.data for n, p in sorted(parts.items())}],
                             use_bin_type=True)
    data = machine.snapshot()
    assert data == expected
    copy = ServerMachine({n: Blob(b"") for n in parts})  # type: ignore[misc]
    copy.restore(data)
    assert copy.applied == applied
    assert {n: p.restored for n, p in copy.parts.items()} == {n: p.data for n, p in parts.items()}  # type: ignore[attr-defined]


def test_snapshot_copies_the_parts_once() -> None:
    size = 8 << 20
    machine = ServerMachine({"big": Blob(b"x" * size), "small": Blob(b"y")})  # type: ignore[dict-item]
    tracemalloc.start()
    try:
        data = machine.snapshot()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) > size
    assert peak < size * 1.25, f"snapshot peaked at {peak} bytes for a {size}-byte part"
