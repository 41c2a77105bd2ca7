"""Print the BENCH line from the iperf3 JSON results: medians of 3 runs."""
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])


def mbps(kind):
    runs = []
    for f in sorted(out.glob(f"{kind}-*.json")):
        r = json.loads(f.read_text())
        runs.append(r["end"]["sum_received"]["bits_per_second"] / 1e6)
    if not runs:
        sys.exit(f"no {kind} results in {out}")
    return statistics.median(runs), runs


clear, clear_runs = mbps("clear")
esp, esp_runs = mbps("esp")
print("runs clear:", " ".join(f"{r:.0f}" for r in clear_runs), "esp:", " ".join(f"{r:.0f}" for r in esp_runs))
print(
    f"BENCH esp-throughput clear_mbps={clear:.0f} esp_mbps={esp:.0f} "
    f"ratio={esp / clear:.3f} cipher=rfc4106-gcm-aes-128 runs={len(esp_runs)} stat=median"
)
