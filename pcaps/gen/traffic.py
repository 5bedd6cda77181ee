#!/usr/bin/env python3
"""Bounded traffic for pcaps/record.sh: tiny TCP/UDP clients and servers.

Every loop here is bounded in count and in time (socket timeouts plus an
overall deadline), so a lost packet can never leave a process running.
Payloads are deterministic so that two recordings differ only in timestamps,
TCP initial sequence numbers and IP IDs.
"""
import argparse
import socket
import struct
import sys
import time

IO_TIMEOUT_S = 5.0


def ready():
    print("ready", flush=True)


def pattern(n):
    """n bytes of a fixed pattern (i mod 251, a prime, so it never aligns with segment sizes)."""
    return bytes(i % 251 for i in range(n))


def tcp_server(a):
    """Accepts `--connections` connections; reads until EOF, checks the pattern, answers 'ok <n>'."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.addr, a.port))
    srv.listen(4)
    srv.settimeout(a.deadline)
    ready()
    for _ in range(a.connections):
        conn, _peer = srv.accept()
        conn.settimeout(IO_TIMEOUT_S)
        got = bytearray()
        while len(got) <= a.max_bytes:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        status = b"ok" if bytes(got) == pattern(len(got)) else b"bad-pattern"
        conn.sendall(status + b" %d\n" % len(got))
        conn.close()
    srv.close()


def tcp_client(a):
    """Sends `--bytes` of the pattern from a fixed source port, half-closes, reads the answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.src_addr, a.src_port))
    s.settimeout(IO_TIMEOUT_S)
    s.connect((a.addr, a.port))
    s.sendall(pattern(a.bytes))
    s.shutdown(socket.SHUT_WR)
    answer = s.recv(256)
    s.close()
    print(answer.decode(errors="replace").strip(), flush=True)
    if not answer.startswith(b"ok %d" % a.bytes):
        sys.exit(1)


def dns_name(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def dns_query(txid, name):
    header = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0)  # RD, one question
    return header + dns_name(name) + struct.pack("!HH", 1, 1)  # A, IN


def dns_server(a):
    """Answers up to `--queries` A queries with 10.244.1.<txid % 200 + 10>."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.addr, a.port))
    s.settimeout(a.deadline)
    ready()
    for _ in range(a.queries):
        query, peer = s.recvfrom(512)
        if len(query) < 12:
            continue
        txid, _flags, qdcount = struct.unpack("!HHH", query[:6])
        question = query[12:]
        header = struct.pack("!HHHHHH", txid, 0x8180, qdcount, 1, 0, 0)  # QR, RD, RA
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4)  # name ptr, A, IN, ttl, rdlen
        answer += bytes([10, 244, 1, txid % 200 + 10])
        s.sendto(header + question + answer, peer)
    s.close()


def dns_client(a):
    """Sends `--queries` queries, one at a time, each waiting for its answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.src_addr, a.src_port))
    s.settimeout(IO_TIMEOUT_S)
    for i in range(a.queries):
        txid = 0x1000 + i
        s.sendto(dns_query(txid, "pod-%d.podswitch.test" % i), (a.addr, a.port))
        answer, _ = s.recvfrom(512)
        got = struct.unpack("!H", answer[:2])[0]
        if got != txid:
            sys.exit("dns: answer txid %#x for query %#x" % (got, txid))
    s.close()


def udp_sink(a):
    """Counts datagrams until `--count` arrived or the link is idle for a second."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.addr, a.port))
    s.settimeout(a.deadline)
    ready()
    got = 0
    end = time.monotonic() + a.deadline
    try:
        while got < a.count and time.monotonic() < end:
            s.recv(2048)
            got += 1
            s.settimeout(1.0)
    except socket.timeout:
        pass
    print("sink received %d" % got, flush=True)


def udp_blast(a):
    """Sends `--count` datagrams of 18 bytes round-robin over `--flows` source ports.

    Payload: sequence number (u32), flow index (u16), then 12 fixed bytes, so a
    frame is 14 + 20 + 8 + 18 = 60 bytes: the Ethernet minimum without FCS.
    """
    socks = []
    for i in range(a.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a.src_addr, a.src_port + i))
        socks.append(s)
    tail = b"podswitch-64"
    end = time.monotonic() + a.deadline
    sent = 0
    while sent < a.count and time.monotonic() < end:
        for flow, s in enumerate(socks):
            if sent == a.count:
                break
            s.sendto(struct.pack("!IH", sent, flow) + tail, (a.addr, a.port))
            sent += 1
        time.sleep(a.burst_gap_us / 1e6)
    for s in socks:
        s.close()
    print("sent %d" % sent, flush=True)
    if sent != a.count:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def cmd(name, fn, **defaults):
        c = sub.add_parser(name)
        c.set_defaults(fn=fn)
        c.add_argument("--addr", required=True)
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--deadline", type=float, default=30.0, help="seconds before giving up")
        for key, value in defaults.items():
            c.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
        return c

    cmd("tcp-server", tcp_server, connections=1, max_bytes=1 << 20)
    cmd("tcp-client", tcp_client, src_addr="", src_port=0, bytes=256 * 1024)
    cmd("dns-server", dns_server, queries=3)
    cmd("dns-client", dns_client, src_addr="", src_port=0, queries=3)
    cmd("udp-sink", udp_sink, count=20000)
    cmd("udp-blast", udp_blast, src_addr="", src_port=42000, count=20000, flows=64, burst_gap_us=2000)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
