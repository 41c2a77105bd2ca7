#!/usr/bin/env python3
"""Turns a charon-netns.sh capture into test vectors.

    extract-capture.py PCAP CHARON_LOG OUTDIR

Writes each UDP payload of PCAP (Ethernet, pcap format) as OUTDIR/NN-<exchange>.bin and the
secrets charon logged at `ike = 4` (initiator side) as OUTDIR/keys.txt (name=hex lines).
"""
import re
import struct
import sys

EXCH = {34: "ike-sa-init", 35: "ike-auth", 36: "create-child-sa", 37: "informational"}


def main(pcap, log, out):
    data = open(pcap, "rb").read()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
    assert struct.unpack("<I", data[20:24])[0] == 1, "expects Ethernet link type"
    off, n = 24, 0
    while off < len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        ip = pkt[14:]
        udp = ip[(ip[0] & 15) * 4:]
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        payload = udp[8:ulen]
        if sport == 4500 or dport == 4500:
            if payload[:4] != b"\0\0\0\0":
                continue  # ESP
            payload = payload[4:]
        n += 1
        flags = payload[19]
        kind = EXCH.get(payload[18], str(payload[18]))
        kind += "-resp" if flags & 0x20 else "-req"
        open(f"{out}/{n:02d}-{kind}.bin", "wb").write(payload)
    want = {
        "shared Diffie Hellman secret": "g_ir", "SKEYSEED": "skeyseed", "Sk_d secret": "sk_d",
        "Sk_ai secret": "sk_ai", "Sk_ar secret": "sk_ar", "Sk_ei secret": "sk_ei",
        "Sk_er secret": "sk_er", "Sk_pi secret": "sk_pi", "Sk_pr secret": "sk_pr",
    }
    lines = open(log).read().splitlines()
    keys = {}
    for i, line in enumerate(lines):
        m = re.search(r"\[IKE\] (.*?) => (\d+) bytes", line)
        if not m or m.group(1) not in want or want[m.group(1)] in keys:
            continue
        size, hx, k = int(m.group(2)), "", i + 1
        while len(hx) < 2 * size:
            hx += re.search(r"\[IKE\]\s+\d+: ((?:[0-9A-F]{2} ?)+)", lines[k]).group(1).replace(" ", "")
            k += 1
        keys[want[m.group(1)]] = hx[:2 * size].lower()
    with open(f"{out}/keys.txt", "w") as f:
        for name in want.values():
            if name in keys:
                f.write(f"{name}={keys[name]}\n")
    print(f"{n} datagrams, {len(keys)} secrets")


if __name__ == "__main__":
    main(*sys.argv[1:4])
