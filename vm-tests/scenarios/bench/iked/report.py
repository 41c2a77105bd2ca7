#!/usr/bin/env python3
"""Median of the runs of each implementation and the BENCH line."""
import glob, statistics, sys
out = sys.argv[1]
rates = {}
for impl in ("gatekey", "strongswan"):
    v = []
    for f in sorted(glob.glob(f"{out}/{impl}-*.txt")):
        kv = dict(x.split("=") for x in open(f).read().split()[2:])
        v.append(float(kv["per_s"]))
        n = kv["n"]
    rates[impl] = statistics.median(v)
    print(f"{impl}: runs {v} median {rates[impl]:.1f}/s")
g, s = rates["gatekey"], rates["strongswan"]
print(f"BENCH iked-setup gatekey_per_s={g:.1f} strongswan_per_s={s:.1f} ratio={g / s:.2f} tunnels={n} runs={len(v)} stat=median kernel=guest proposal=psk-x25519-aes256gcm16")
