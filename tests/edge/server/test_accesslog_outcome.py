"""The access log writes the same `cache` words it always has, now derived from CacheOutcome."""

from __future__ import annotations

import io
import json

import pytest
from multidict import CIMultiDict

from edge.rules.outcome import CacheOutcome
from edge.server.accesslog import AccessLog
from edge.server.request import Request

pytestmark = pytest.mark.timeout(10)

# The words log consumers have seen since before outcomes were an enum.
LOGGED = {
    CacheOutcome.HIT: "hit",
    CacheOutcome.STALE_HIT: "stale",
    CacheOutcome.STALE_ERROR: "stale-error",
    CacheOutcome.MISS: "miss",
    CacheOutcome.PEER_HIT: "peer-hit",
    CacheOutcome.EXPIRED: "miss",
    CacheOutcome.REVALIDATED: "revalidated",
    CacheOutcome.COLLAPSED: "collapsed",
    CacheOutcome.PASS: "pass",
    CacheOutcome.ERROR: "error",
    CacheOutcome.CLIENT_GONE: "client-gone",
    CacheOutcome.BAD_REQUEST: "bad-request",
    CacheOutcome.NO_ROUTE: "no-route",
    CacheOutcome.NOT_FOUND: "not-found",
}


@pytest.mark.parametrize(("outcome", "word"), LOGGED.items())
def test_write_logs_historic_word_when_request_ends_in_outcome(outcome: CacheOutcome, word: str) -> None:
    out = io.StringIO()
    request = Request(
        method="GET",
        target="/a",
        version="1.1",
        headers=CIMultiDict({"Host": "h"}),
        body=None,
        keep_alive=True,
        peer="127.0.0.1",
    )
    log = AccessLog(out, "edge1")
    log.write(request, 200, outcome, 5, 0.001)
    log.close()  # the writer thread flushes what is queued
    line = json.loads(out.getvalue())
    assert (line["cache"], line["host"], line["status"], line["node"]) == (word, "h", 200, "edge1")


def test_write_fast_logs_hit_when_fast_path_answers() -> None:
    out = io.StringIO()
    log = AccessLog(out)
    log.write_fast("127.0.0.1", "GET", b"H", b"/a", 200, 5, CacheOutcome.HIT)
    log.close()
    line = json.loads(out.getvalue())
    assert (line["cache"], line["host"], line["target"]) == ("hit", "h", "/a")


def test_combined_format_carries_duration_upstream_and_cache_when_chosen_in_config() -> None:
    out = io.StringIO()
    request = Request(
        method="GET",
        target='/a?q="x"',
        version="1.1",
        headers=CIMultiDict({"Host": "h", "User-Agent": "curl/8", "Referer": "http://r/"}),
        body=None,
        keep_alive=True,
        peer="127.0.0.1",
    )
    log = AccessLog(out, "edge1", fmt="combined")
    log.write(request, 200, CacheOutcome.PEER_HIT, 5, 0.000123, "peer:n1")
    log.write_fast("127.0.0.2", "GET", b"h", b"/b", 200, 7, CacheOutcome.HIT, 0.0000004, [(b"User-Agent", b"wrk")])
    log.close()
    slow, fast = out.getvalue().splitlines()
    assert slow.startswith('127.0.0.1 - - [') and '"GET /a?q=\\"x\\" HTTP/1.1" 200 5 "http://r/" "curl/8"' in slow
    assert slow.endswith("cache=peer-hit upstream=peer:n1 us=123 node=edge1")
    assert '"GET /b HTTP/1.1" 200 7 "-" "wrk" cache=hit upstream=- us=1 ' in fast  # never 0 µs


def test_json_line_has_microseconds_and_upstream_when_a_request_is_logged() -> None:
    out = io.StringIO()
    log = AccessLog(out)
    log.write_fast("127.0.0.1", "GET", b"h", b"/a", 200, 5, CacheOutcome.HIT, 0.0000072)
    log.close()
    line = json.loads(out.getvalue())
    assert (line["us"], line["ms"], line["upstream"]) == (7, 0.007, "")
