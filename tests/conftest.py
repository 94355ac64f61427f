"""Session-wide test settings.

Every node a test starts runs as one process unless its config or command line asks for
workers (issue 13): `workers` defaults to $EDGECACHE_WORKERS, else one per core, and the
suite's assertions about one node's counters and logs assume one process.
"""

from __future__ import annotations

import os

os.environ.setdefault("EDGECACHE_WORKERS", "1")
