"""GDSFPolicy: Greedy-Dual-Size-Frequency (Cherkasova 1998), sized in bytes, for the memory tier.

Every resident key has a priority H = L + frequency / size, and eviction takes the lowest H
first. L is the inflation clock: it rises to the priority of each victim, so a key that was
hot long ago keeps its old, low H while newly touched keys are priced from the current L.
That is the aging: past popularity decays against the clock without any timer, and a once
viral object cannot sit in RAM forever on frequency alone.

Why GDSF for RAM: the memory tier exists to serve as many *requests* as possible from a small
budget, and one 4 MiB video segment costs the room of three hundred 12 KiB assets. Dividing by
size ranks objects by hits per byte of RAM, which is what an object-hit-optimal tier wants
(S3-FIFO and LRU ignore size). A newcomer is ranked like everyone else and may be its own
victim: a large, cold body does not enter RAM unless its frequency earns the room, so the
store drops it at once and the disk tier (sendfile) keeps serving it.

Bookkeeping is a binary heap of (H, seq, key) entries, kept lazily so that a hit, the hot
path, is O(1): touch() only raises the key's H in its dict entry. Heap priorities are thus
lower bounds; eviction pops the top and, if the key's H has risen since, pushes it back at
its real H instead of evicting it, so the victim is always the key with the lowest current H.
Entries of forgotten keys are skipped when they surface, and the heap is rebuilt when they
outnumber live ones, so it stays within about twice the resident keys.
"""

from __future__ import annotations

import heapq

__all__ = ["GDSFPolicy"]

MAX_FREQ = 1 << 16  # frequency saturates here; L-aging, not the cap, is what forgets old heat


class GDSFPolicy:
    """GDSF over a byte budget; bookkeeping only, admit() returns victims (maybe `key` itself)."""

    __slots__ = ("_byte_hits", "_clock", "_heap", "_items", "_max_bytes", "_seq", "_used")

    def __init__(self, max_bytes: int, *, byte_hits: bool = False) -> None:
        """`byte_hits` prices a hit by its bytes (cost = size): H = L + frequency, LFU-DA."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._byte_hits = byte_hits
        self._max_bytes = max_bytes
        self._used = 0
        self._clock = 0.0  # L: the priority of the last victim
        self._seq = 0  # ties on H go to the older entry first (FIFO among equals)
        # key -> [priority, frequency, size, seq]; a heap entry is live iff its seq matches.
        self._items: dict[bytes, list[float | int]] = {}
        self._heap: list[tuple[float, int, bytes]] = []

    @property
    def max_bytes(self) -> int:
        """The byte budget."""
        return self._max_bytes

    @property
    def used_bytes(self) -> int:
        """The sum of the resident sizes."""
        return self._used

    @property
    def clock(self) -> float:
        """L, the inflation value: the priority of the most recent victim."""
        return self._clock

    def priority(self, key: bytes) -> float | None:
        """The key's current H, or None if it is not resident."""
        item = self._items.get(key)
        return None if item is None else float(item[0])

    def frequency(self, key: bytes) -> int:
        """Hits counted since the key was admitted (1 on admission); 0 when not resident."""
        item = self._items.get(key)
        return 0 if item is None else int(item[1])

    def admit(self, key: bytes, size: int) -> list[bytes]:
        """Ranks `key` at L + 1/size (a resize counts as a hit); evicts the lowest H until it fits.

        Unlike LRU and S3-FIFO, `key` itself can be among the victims when every resident key
        outranks it: the store then drops it, and it was never worth the room.
        """
        item = self._items.get(key)
        if item is not None:
            self._used += size - int(item[2])
            item[2] = size
            self._reprice(key, item, int(item[1]) + 1)
            self._push(key, item)  # a larger size can lower H: the heap entry must follow
        elif size > self._max_bytes:
            return [key]
        else:
            item = [0.0, 0, size, 0]
            self._items[key] = item
            self._used += size
            self._reprice(key, item, 1)
            self._push(key, item)
        victims: list[bytes] = []
        while self._used > self._max_bytes:
            victims.append(self._evict())
        return victims

    def touch(self, key: bytes) -> None:
        """Counts a hit and re-prices the key from the current clock."""
        item = self._items.get(key)
        if item is not None:
            self._reprice(key, item, int(item[1]) + 1)

    def forget(self, key: bytes) -> None:
        """Drops a resident key (its heap entry goes stale); the clock does not move."""
        item = self._items.pop(key, None)
        if item is not None:
            self._used -= int(item[2])

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def _reprice(self, key: bytes, item: list[float | int], freq: int) -> None:
        # H only rises here (the clock never falls), so the heap entry stays a lower bound.
        freq = min(freq, MAX_FREQ)
        size = int(item[2])
        item[0] = self._clock + (freq if self._byte_hits or not size else freq / size)
        item[1] = freq

    def _push(self, key: bytes, item: list[float | int]) -> None:
        self._seq += 1
        item[3] = self._seq
        heapq.heappush(self._heap, (float(item[0]), self._seq, key))
        if len(self._heap) > 2 * len(self._items) + 64:
            self._compact()

    def _evict(self) -> bytes:
        # Called only while used > max_bytes, so at least one live entry is in the heap.
        items = self._items
        while True:
            priority, seq, key = heapq.heappop(self._heap)  # _push may have rebuilt the heap
            item = items.get(key)
            if item is None or item[3] != seq:
                continue  # forgotten, or re-admitted under a newer entry
            if priority < item[0]:
                self._push(key, item)  # touched since it was pushed: back in at its real H
                continue
            break
        del items[key]
        self._used -= int(item[2])
        self._clock = priority
        return key

    def _compact(self) -> None:
        self._heap = [(float(it[0]), int(it[3]), key) for key, it in self._items.items()]
        heapq.heapify(self._heap)
