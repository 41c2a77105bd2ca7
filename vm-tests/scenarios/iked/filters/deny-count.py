"""Print the packet count of SYSDEFAULTDENYRULE in one direction of the
current filter set, from `ipsec -f display --json` on stdin."""
import json
import sys

direction = sys.argv[1]
records = json.load(sys.stdin)["records"]
print(sum(r["matched_packets"] for r in records
          if r["filter_name"] == "SYSDEFAULTDENYRULE" and r["direction"] == direction))
