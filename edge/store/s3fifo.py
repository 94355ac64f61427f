"""S3FIFOPolicy: the S3-FIFO eviction policy (Yang et al., SOSP 2023), sized in bytes.

Three FIFO queues: a small queue (10% of the budget) that every new key enters, a main
queue (90%) for keys that proved themselves, and a ghost queue that remembers the keys
recently evicted from the small queue (keys and sizes only, up to the main queue's bytes).
A hit only bumps a 2-bit frequency (capped at 3); nothing moves on a hit, so the hot path
is one dict update. One-hit wonders leave from the small queue without disturbing the main
queue, which is what makes S3-FIFO resist scans better than LRU.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["S3FIFOPolicy"]

MAX_FREQ = 3  # frequency counters saturate at 3 (2 bits in the paper)


class S3FIFOPolicy:
    """S3-FIFO over a byte budget; bookkeeping only, admit() returns victims."""

    __slots__ = (
        "_freq",
        "_ghost",
        "_ghost_bytes",
        "_ghost_max",
        "_main",
        "_main_bytes",
        "_max_bytes",
        "_move_threshold",
        "_small",
        "_small_bytes",
        "_small_max",
    )

    def __init__(self, max_bytes: int, *, small_ratio: float = 0.1, move_to_main_threshold: int = 1) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not 0.0 < small_ratio < 1.0:
            raise ValueError("small_ratio must be between 0 and 1")
        self._max_bytes = max_bytes
        self._small_max = max(1, int(max_bytes * small_ratio))
        self._ghost_max = max_bytes - self._small_max  # as many bytes as the main queue
        # A key leaving the small queue with freq >= threshold moves to main (hit since insert).
        self._move_threshold = move_to_main_threshold
        # FIFOs map key -> size, oldest first: popitem(last=False) takes the tail.
        self._small: OrderedDict[bytes, int] = OrderedDict()
        self._main: OrderedDict[bytes, int] = OrderedDict()
        self._ghost: OrderedDict[bytes, int] = OrderedDict()
        self._freq: dict[bytes, int] = {}  # resident keys only
        self._small_bytes = 0
        self._main_bytes = 0
        self._ghost_bytes = 0

    @property
    def max_bytes(self) -> int:
        """The byte budget."""
        return self._max_bytes

    @property
    def used_bytes(self) -> int:
        """The sum of the resident sizes (small + main)."""
        return self._small_bytes + self._main_bytes

    def in_small(self, key: bytes) -> bool:
        """True if `key` is resident in the small queue (probation)."""
        return key in self._small

    def in_main(self, key: bytes) -> bool:
        """True if `key` is resident in the main queue."""
        return key in self._main

    def in_ghost(self, key: bytes) -> bool:
        """True if `key` was recently evicted from the small queue and is remembered."""
        return key in self._ghost

    def frequency(self, key: bytes) -> int:
        """The key's hit counter (0..MAX_FREQ); 0 for keys not resident."""
        return self._freq.get(key, 0)

    def admit(self, key: bytes, size: int) -> list[bytes]:
        """Inserts `key` into the small queue (main if the ghost remembers it); returns victims."""
        if key in self._freq:
            self._resize(key, size)
        elif size > self._max_bytes:
            return [key]
        elif (ghost_size := self._ghost.pop(key, None)) is not None:
            self._ghost_bytes -= ghost_size
            self._main[key] = size
            self._main_bytes += size
            self._freq[key] = 0
        else:
            self._small[key] = size
            self._small_bytes += size
            self._freq[key] = 0
        victims: list[bytes] = []
        while self._small_bytes + self._main_bytes > self._max_bytes:
            if self._small and (self._small_bytes >= self._small_max or not self._main):
                victim = self._evict_small(key)
            else:
                victim = self._evict_main()
            if victim is not None:
                victims.append(victim)
        return victims

    def touch(self, key: bytes) -> None:
        """Bumps the key's frequency, saturating at MAX_FREQ; nothing moves."""
        freq = self._freq.get(key)
        if freq is not None and freq < MAX_FREQ:
            self._freq[key] = freq + 1

    def forget(self, key: bytes) -> None:
        """Drops a resident key without remembering it in the ghost queue."""
        if self._freq.pop(key, None) is None:
            return
        size = self._small.pop(key, None)
        if size is not None:
            self._small_bytes -= size
            return
        self._main_bytes -= self._main.pop(key)

    def __contains__(self, key: object) -> bool:
        return key in self._freq

    def __len__(self) -> int:
        return len(self._freq)

    def _resize(self, key: bytes, size: int) -> None:
        # A new size for a resident key (replaced in place): keep its queue, count a hit.
        if key in self._small:
            self._small_bytes += size - self._small[key]
            self._small[key] = size
        else:
            self._main_bytes += size - self._main[key]
            self._main[key] = size
        self.touch(key)

    def _evict_small(self, protect: bytes) -> bytes | None:
        key, size = self._small.popitem(last=False)
        self._small_bytes -= size
        # The key being admitted is never its own victim: it goes to main instead.
        if self._freq[key] >= self._move_threshold or key == protect:
            self._main[key] = size
            self._main_bytes += size
            self._freq[key] = 0
            return None
        del self._freq[key]
        self._ghost[key] = size
        self._ghost_bytes += size
        while self._ghost_bytes > self._ghost_max:
            _, ghost_size = self._ghost.popitem(last=False)
            self._ghost_bytes -= ghost_size
        return key

    def _evict_main(self) -> bytes | None:
        key, size = self._main.popitem(last=False)
        freq = self._freq[key]
        if freq > 0:
            # Second chance: back to the head with one less credit.
            self._freq[key] = freq - 1
            self._main[key] = size
            return None
        del self._freq[key]
        self._main_bytes -= size
        return key
