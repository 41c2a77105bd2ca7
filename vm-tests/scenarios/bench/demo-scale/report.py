#!/usr/bin/env python3
"""Medians of the runs of each mode and the BENCH line."""
import glob, statistics, sys
out, k = sys.argv[1], sys.argv[2]
rates, n, runs, per_run = {}, None, 0, {}
for mode in ("nss", "local"):
    v = []
    for f in sorted(glob.glob(f"{out}/{mode}-*.txt")):
        kv = dict(x.split("=") for x in open(f).read().split()[2:])
        v.append(float(kv["per_s"]))
        per_run.setdefault(f.rsplit("-", 1)[1], {})[mode] = float(kv["per_s"])
        n = kv["n"]
    if not v:
        raise SystemExit(f"no {mode} runs in {out}")
    rates[mode] = statistics.median(v)
    runs = len(v)
    print(f"{mode}: runs {v} median {rates[mode]:.2f}/s")
    rates[mode + "_range"] = f"{min(v):.2f}-{max(v):.2f}"
a, b = rates["nss"], rates["local"]
# Runs alternate (NSS r, then local r): the ratio within each pair, median.
pairs = [r["nss"] / r["local"] for r in per_run.values() if "nss" in r and "local" in r]
pair = f"{statistics.median(pairs):.2f}" if pairs else "none"
print(f"BENCH nss-setup tunnels={n} nss_per_s={a:.2f} local_per_s={b:.2f} ratio={a / b:.2f} "
      f"median_pair_ratio={pair} nss_range={rates['nss_range']} local_range={rates['local_range']} "
      f"gateways={k} signatures_per_tunnel=2 runs={runs} stat=median kernel=guest "
      f"proposal=rsa2048-p256-aes256gcm16 ikeds=1-per-gateway")
