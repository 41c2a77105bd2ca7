#!/usr/bin/env python3
"""Medians of the runs of each mode (OUT/<mode>-<round>.txt) and the BENCH line."""
import glob, statistics, sys
out = sys.argv[1]
rates, ranges, n, per_round = {}, {}, None, {}
for mode in ("nss", "local"):
    v = []
    for f in sorted(glob.glob(f"{out}/{mode}-*.txt")):
        kv = dict(x.split("=") for x in open(f).read().split()[2:])
        v.append(float(kv["per_s"]))
        per_round.setdefault(f.rsplit("-", 1)[1], {})[mode] = float(kv["per_s"])
        n = kv["n"]
    if not v:
        raise SystemExit(f"no {mode} runs in {out}")
    rates[mode] = statistics.median(v)
    ranges[mode] = f"{min(v):.2f}-{max(v):.2f}"
    print(f"{mode}: runs {v} median {rates[mode]:.2f}/s")
a, b = rates["nss"], rates["local"]
# Each round has one run of each mode: the ratio within each round, median.
pairs = [r["nss"] / r["local"] for r in per_round.values() if "nss" in r and "local" in r]
pair = f"{statistics.median(pairs):.2f}" if pairs else "none"
print(f"BENCH nss-setup tunnels={n} nss_per_s={a:.2f} local_per_s={b:.2f} ratio={a / b:.2f} "
      f"median_pair_ratio={pair} nss_range={ranges['nss']} local_range={ranges['local']} "
      f"gateway_stacks=5 initiating_stacks=4 ikeds=2 signatures_per_tunnel=2 "
      f"runs={len(pairs)} stat=median kernel=guest proposal=rsa2048-p256-aes256gcm16")
