#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of the SPDY session fuzzer (corpus/*.bin) from the captured traces of
kubernetes-streaming.md section 10: the client-to-server bytes of each trace, as a server reads
them after the 101 response. Where the spec abbreviates a trace, the missing frames are built
here: header blocks continue the client's zlib stream (a raw deflate whose window is primed
with the SPDY/3 dictionary plus the blocks before, as RawDeflater in
tests/spdy_test_util.h does), so every seed decodes as a whole session.

Run from anywhere: python3 make_corpus.py [SPDY3_DICTIONARY_HEX]
(default: ../../../../../shared/specs/streaming/spdy3-zlib-dictionary.hex)."""
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def unhex(text):
    digits = "".join(c for c in text if c in "0123456789abcdefABCDEF")
    return bytes.fromhex(digits)


def load_dictionary(path):
    lines = [l.split("#")[0] for l in open(path)]
    d = unhex(" ".join(lines))
    assert len(d) == 1423 and zlib.adler32(d) == 0xE3C6A7C2, "not the SPDY/3 dictionary"
    return d


def plain_block(pairs):
    out = struct.pack(">I", len(pairs))
    for name, value in pairs:
        out += struct.pack(">I", len(name)) + name.encode()
        out += struct.pack(">I", len(value)) + value.encode()
    return out


class Client:
    """The client side of one session: frames, and its one header compression stream."""

    def __init__(self, dictionary, history=None):
        self.dictionary = dictionary
        if history is None:
            self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                            dictionary)
        else:  # continue a stream Go started: the window holds the dictionary and history
            self.deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY,
                                            dictionary + history)

    def block(self, pairs):
        return self.deflate.compress(plain_block(pairs)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def control(kind, flags, payload):
        return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload

    def syn_stream(self, sid, pairs, flags=0):
        return self.control(1, flags, struct.pack(">IIBB", sid, 0, 0, 0) + self.block(pairs))

    @staticmethod
    def data(sid, payload=b"", flags=0):
        return struct.pack(">II", sid, (flags << 24) | len(payload)) + payload

    def fin(self, sid):
        return self.data(sid, b"", 1)

    def rst(self, sid, status=5):
        return self.control(3, 0, struct.pack(">II", sid, status))

    def ping(self, pid):
        return self.control(6, 0, struct.pack(">I", pid))

    def goaway(self, last=0, status=0):
        return self.control(7, 0, struct.pack(">II", last, status))


# §10.2, client to server, as captured (Go's compressor).
TRACE_102_CLIENT = unhex(
    "80030001 00000029 00000001 00000000 00 00 78f9e3c6a7c2 "
    "6260606004a7b392a2d4c45c6851c29a0a0a68 00000000ffff "
    "80030001 00000019 00000003 00000000 00 00 c22ac5565c92925f5a02 000000ffff "
    "80030001 00000015 00000005 00000000 00 00 c229975a5404 000000ffff")
TRACE_102_HISTORY = b"".join(
    plain_block([("streamtype", t)]) for t in ("error", "stdout", "stderr"))
# §10.5, the first SYN_STREAM as captured.
TRACE_105_FIRST = unhex(
    "80030001 0000003d 00000001 00000000 0000 78f9e3c6a7c2 "
    "02253a48f95b044aab4c16060c0c0c9c4590d8ca04a5624603703a2c294a4dcc851635aca9a088 "
    "00000000ffff")
# §10.2, server to client (as garbage for a server: replies, data on unknown streams).
TRACE_102_SERVER_HEAD = unhex(
    "80030002 00000014 00000001 78f9e3c6a7c2 62606060 00000000ffff "
    "80030002 0000000c 00000003 0261 00000000ffff "
    "80030002 0000000c 00000005 0261 00000000ffff")


def seeds(dictionary):
    out = {}
    # 10.2: exec without tty; the client then leaves as client-go does.
    c = Client(dictionary, TRACE_102_HISTORY)
    out["trace_10_2_exec_v4_client"] = TRACE_102_CLIENT
    out["trace_10_2_exec_v4_client_leaves"] = TRACE_102_CLIENT + c.rst(1) + c.goaway()
    # 10.2 server side fed to a server.
    status = (b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero '
              b'exit code: error executing command [fail], exit code 3","reason":'
              b'"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}')
    out["trace_10_2_server_bytes"] = (
        TRACE_102_SERVER_HEAD + Client.data(3, b"out-data\n") + Client.data(5, b"err-data\n") +
        Client.data(3, b"", 1) + Client.data(5, b"", 1) + Client.data(1, status) +
        unhex("80030003 00000008 00000001 00000005 80030007 00000008 00000005 00000000"))
    # 10.3: exec with tty and stdin.
    c = Client(dictionary)
    out["trace_10_3_exec_tty_stdin"] = (
        c.syn_stream(1, [("streamtype", "error")]) + c.syn_stream(3, [("streamtype", "stdin")]) +
        c.syn_stream(5, [("streamtype", "stdout")]) +
        c.syn_stream(7, [("streamtype", "resize")]) +
        c.data(7, b'{"Width":100,"Height":40}\n') + c.data(3, b"hello\n") + c.fin(3))
    # 10.4: PINGs, then the late RST_STREAM and GOAWAY of a closing client.
    c = Client(dictionary, TRACE_102_HISTORY)
    out["trace_10_4_pings_late_close"] = (
        TRACE_102_CLIENT + c.ping(1) + c.ping(3) + c.rst(3) + c.goaway())
    # 10.5: port-forward, two requests.
    c = Client(dictionary, plain_block([("port", "80"), ("requestid", "0"),
                                        ("streamtype", "error")]))
    out["trace_10_5_port_forward"] = (
        TRACE_105_FIRST + c.fin(1) +
        c.syn_stream(3, [("streamtype", "data"), ("port", "80"), ("requestid", "0")]) +
        c.data(3, b"ping") + c.rst(3) +
        c.syn_stream(5, [("port", "81"), ("requestid", "1"), ("streamtype", "error")]) +
        c.fin(5) +
        c.syn_stream(7, [("streamtype", "data"), ("port", "81"), ("requestid", "1")]) +
        c.data(7, b"ping") + c.rst(7) + c.goaway())
    # The frames Kubernetes never sends but a server must take: SETTINGS, WINDOW_UPDATE,
    # HEADERS, a unidirectional stream opened with FIN.
    c = Client(dictionary)
    out["other_frames"] = (
        Client.control(4, 1, struct.pack(">I", 2) + struct.pack(">II", 0x01000004, 100) +
                       struct.pack(">II", 7, 65536)) +
        Client.control(9, 0, struct.pack(">II", 0, 65536)) +
        c.syn_stream(1, [("streamtype", "stdin")], flags=3) +
        c.syn_stream(3, [("streamtype", "stdout")]) +
        Client.control(8, 1, struct.pack(">I", 3) + c.block([("x-extra", "1")])) +
        c.data(3, b"after headers"))
    # Garbage. An HTTP request where SPDY is expected reads as the header of a 5 MiB DATA
    # frame; a SPDY/2 SYN_STREAM, a NOOP and a header block that is not zlib are session
    # errors (GOAWAY).
    out["garbage_http"] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    c = Client(dictionary)
    out["garbage_spdy2"] = struct.pack(">HHI", 0x8002, 1, 10 + 4) + struct.pack(
        ">IIBB", 1, 0, 0, 0) + b"\x00\x00\x00\x00"
    out["garbage_noop"] = c.syn_stream(1, [("streamtype", "error")]) + Client.control(5, 0, b"")
    out["garbage_header_block"] = Client.control(
        1, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"\x78\xf9\xe3\xc6\xa7\xc3garbage")
    return out


def main():
    default = os.path.join(HERE, "../../../../../shared/specs/streaming/spdy3-zlib-dictionary.hex")
    dictionary = load_dictionary(sys.argv[1] if len(sys.argv) > 1 else default)
    # The captured blocks must decode with the dictionary, which also checks the hex above.
    inflate = zlib.decompressobj(zdict=dictionary)
    for block in (TRACE_102_CLIENT[18:49],):
        assert inflate.decompress(block) == plain_block([("streamtype", "error")])
    corpus = os.path.join(HERE, "corpus")
    os.makedirs(corpus, exist_ok=True)
    for name, data in sorted(seeds(dictionary).items()):
        with open(os.path.join(corpus, name + ".bin"), "wb") as f:
            f.write(data)
        print(f"{name}.bin: {len(data)} bytes")


if __name__ == "__main__":
    main()
