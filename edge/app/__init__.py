"""The only wiring place: builds one node's stores, origin pools, coalescer and listener.

`EdgeNode(config)` is started with `await node.start()` and stopped with
`await node.drain()` (graceful: edge.server.lifecycle) or `await node.stop()`, which closes
the listener, cancels request tasks and fills under a deadline, and closes the stores and
client sessions.

The wiring is cut by idea; each module builds one part from explicit parameters:
    node.py      EdgeNode: start, reload, drain and stop, in order
    startup.py   StartupError and the parser check run before anything opens
    stores.py    the eviction policies, the disk tier under its directory lock, the tiered store
    peering.py   the region's ring, peer clients, membership and hot-key store
    purging.py   the purge journal, the invalidator and the hub that propagates purges
    serving.py   the request handler for a config, the listening sockets, the admin API
    shutdown.py  the steps of a stop: stop accepting, wait for requests and fills, close
    logs.py      the access log: open at start, swap on reload
    stderr_log.py  the node's own log on stderr, written by a thread behind a bounded queue
    status.py    what GET /status shows
"""

from edge.app.node import EdgeNode
from edge.app.startup import StartupError, check_parsers

__all__ = ["EdgeNode", "StartupError", "check_parsers"]
