"""A small authoritative DNS server on a loopback UDP port, answering from a dict the test changes.

Built with dnspython's message classes (no fake of the resolver: the node's real resolver
sends real queries to it). `records[(name, type)]` holds rdata texts, e.g.
    records[("peers.test.", "A")] = ["127.0.0.11", "127.0.0.12"]
    records[("_peer._tcp.peers.test.", "SRV")] = ["0 0 9080 edge-0.peers.test."]
A name with no entry of any type is NXDOMAIN; `silent = True` drops every query (a server that
times out); `queries` counts what arrived.
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DnsServer"]


class DnsServer(asyncio.DatagramProtocol):
    """Answers A, AAAA and SRV queries from `records`."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent = False
        self.queries = 0
        self.answered = asyncio.Event()  # set after each answer; the test clears it
        self._transport: asyncio.DatagramTransport | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1") -> DnsServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self._transport = transport
        self.host, self.port = transport.get_extra_info("sockname")[:2]
        return self

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        if self.silent or self._transport is None:
            return
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        texts = self.records.get((name, rdtype))
        if texts:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 5, dns.rdataclass.IN, rdtype, texts)
            )
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.flags |= dns.flags.AA
        self._transport.sendto(response.to_wire(), addr)
        self.answered.set()
