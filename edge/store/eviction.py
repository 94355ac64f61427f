"""Eviction policies: byte-budget bookkeeping that decides which objects leave, and nothing else.

After Pingora's eviction manager, a policy never touches a store: the store tells it what
was inserted (admit), read (touch) or removed (forget), and admit() returns the victims the
store must delete to stay within max_bytes. Policies are pure and synchronous. LRUPolicy is
the baseline; GDSFPolicy (edge/store/gdsf.py) is the memory tier's default and S3FIFOPolicy
(edge/store/s3fifo.py) the disk tier's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

__all__ = ["EvictionPolicy", "LRUPolicy"]


class EvictionPolicy(Protocol):
    """Bookkeeping of which keys a store holds and their sizes; returns eviction victims.

    The store calls admit() after inserting an object, touch() on every hit and forget()
    after removing an object for any reason other than a victim returned by admit(). The
    victims admit() returns are already forgotten by the policy; the store deletes them.
    """

    @property
    def max_bytes(self) -> int:
        """The byte budget the policy keeps used_bytes within."""
        ...

    @property
    def used_bytes(self) -> int:
        """The sum of the sizes of the tracked keys."""
        ...

    def admit(self, key: bytes, size: int) -> list[bytes]:
        """Tracks `key` (a new object, or a new size for a tracked one); returns the victims.

        An object larger than max_bytes is not tracked: admit returns [key] itself. LRU and
        S3-FIFO never otherwise return `key`; GDSF may, when every resident key outranks it
        (the store then drops the newcomer: it was refused).
        """
        ...

    def touch(self, key: bytes) -> None:
        """Records a hit on `key`; unknown keys are ignored."""
        ...

    def forget(self, key: bytes) -> None:
        """Stops tracking `key` (purged, replaced, corrupt); unknown keys are ignored."""
        ...

    def __contains__(self, key: object) -> bool: ...

    def __len__(self) -> int: ...


class LRUPolicy:
    """Least recently used: a hit moves a key to the front, eviction takes from the back."""

    __slots__ = ("_max_bytes", "_order", "_used")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._max_bytes = max_bytes
        self._used = 0
        # Oldest first: the first key is the next victim.
        self._order: OrderedDict[bytes, int] = OrderedDict()

    @property
    def max_bytes(self) -> int:
        """The byte budget."""
        return self._max_bytes

    @property
    def used_bytes(self) -> int:
        """The sum of the tracked sizes."""
        return self._used

    def admit(self, key: bytes, size: int) -> list[bytes]:
        """Puts `key` at the most recent end and evicts from the least recent end."""
        self.forget(key)
        if size > self._max_bytes:
            return [key]
        self._order[key] = size
        self._used += size
        victims: list[bytes] = []
        while self._used > self._max_bytes:
            victim, victim_size = self._order.popitem(last=False)
            self._used -= victim_size
            victims.append(victim)
        return victims

    def touch(self, key: bytes) -> None:
        """Moves `key` to the most recent end."""
        if key in self._order:
            self._order.move_to_end(key)

    def forget(self, key: bytes) -> None:
        """Drops `key`."""
        size = self._order.pop(key, None)
        if size is not None:
            self._used -= size

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)
