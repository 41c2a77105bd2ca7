#!/usr/bin/env python3
"""Turns an ikev1-capture.sh run into IKEv1 test vectors.

    extract-ikev1.py CASE_DIR

Reads CASE_DIR/capture.pcap (Ethernet, captured on the initiator's side), writes each ISAKMP
datagram as CASE_DIR/NN-<exchange>-<i|r>.bin (i: sent by the IKE SA's initiator; the
non-ESP marker of port 4500 removed) and every hex dump charon logged at level 4 in
CASE_DIR/initiator.log and CASE_DIR/responder.log as CASE_DIR/keys.txt lines
`<i|r>.<label>=<hex>` (label lowercased, spaces to `_`; a repeated label gets `.2`, `.3`).
The raw logs and the pcap are then removed: the .bin files and keys.txt are the vectors.
"""
import os
import re
import struct
import sys

EXCH = {2: "main", 4: "aggressive", 5: "info", 32: "quick"}


def datagrams(case):
    data = open(f"{case}/capture.pcap", "rb").read()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
    assert struct.unpack("<I", data[20:24])[0] == 1, "expects Ethernet link type"
    off, n = 24, 0
    while off < len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        ip = pkt[14:]
        src = ip[12:16]
        udp = ip[(ip[0] & 15) * 4:]
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        payload = udp[8:ulen]
        if sport == 4500 or dport == 4500:
            if payload[:4] != b"\0\0\0\0":
                continue  # ESP or keepalive
            payload = payload[4:]
        if len(payload) < 28:
            continue
        n += 1
        kind = EXCH.get(payload[18], str(payload[18]))
        side = "i" if src == bytes([192, 0, 2, 1]) else "r"
        open(f"{case}/{n:02d}-{kind}-{side}.bin", "wb").write(payload)
    return n


def dumps(log, side, out):
    lines = open(log).read().splitlines()
    seen = {}
    for i, line in enumerate(lines):
        m = re.search(r"\[(?:IKE|CHD)\] (.*?) => (\d+) bytes", line)
        if not m:
            continue
        label = m.group(1).strip().lower().replace(" ", "_")
        if "state_change" in label or not re.fullmatch(r"[a-z0-9_()]+", label):
            continue
        size, hx, k = int(m.group(2)), "", i + 1
        while len(hx) < 2 * size and k < len(lines):
            mm = re.search(r"\[(?:IKE|CHD)\]\s+\d+: ((?:[0-9A-F]{2} ?)+)", lines[k])
            if not mm:
                break
            hx += mm.group(1).replace(" ", "")
            k += 1
        if len(hx) != 2 * size:
            continue
        seen[label] = seen.get(label, 0) + 1
        name = label if seen[label] == 1 else f"{label}.{seen[label]}"
        out.append(f"{side}.{name}={hx.lower()}")


def main(case):
    n = datagrams(case)
    out = []
    dumps(f"{case}/initiator.log", "i", out)
    dumps(f"{case}/responder.log", "r", out)
    with open(f"{case}/keys.txt", "w") as f:
        f.write("\n".join(out) + "\n")
    for f in ("capture.pcap", "initiator.log", "responder.log"):
        os.remove(f"{case}/{f}")
    print(f"{n} datagrams, {len(out)} logged values")


if __name__ == "__main__":
    main(sys.argv[1])
