#!/usr/bin/env python3
"""On moon: N cycles of a fresh IKE SA for the tunnel alice-bob (each needs
new RSA signatures from the NSS server on both gateways): close the IKE SA
(`ipsec -k deactivate`), wait until it is gone, `ipsec -y activate
alice-bob`, wait until a new IKE SA is DONE (CertificateService NSS) with the
tunnel Active under it.

Before cycle GAP's activation the script writes OUT/gap-ready and waits for
the scenario to stop the primary NSS server (OUT/primary-stopped): that
activation starts while moon's NSS connection is being lost, so its
signature must wait for the switch to the backup server instead of failing.

Usage: cycles.py N GAP OUT. Prints `cycle I K<id> secs=S` per cycle and
`CYCLES ok=N` at the end; exits non-zero on the first failed cycle."""
import json, os, subprocess, sys, time

n, gap, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def ipsec(*args):
    return json.loads(subprocess.run(["ipsec", *args, "--json"], check=True,
                                     capture_output=True, text=True).stdout)["records"]


def until(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit(f"FAIL {what} after {timeout} s:\n"
                     + subprocess.run(["ipsec", "-k", "display"], capture_output=True, text=True).stdout)
        time.sleep(0.1)


seen = set()
for i in range(1, n + 1):
    for k in ipsec("-k", "display"):
        seen.add(k["tunnel_id"])
        subprocess.run(["ipsec", "-k", "deactivate", k["tunnel_id"]], check=True, capture_output=True)
    until(f"cycle {i}: the old IKE SA to go", lambda: not ipsec("-k", "display") and not ipsec("-y", "display"), 20)
    if i == gap:
        open(os.path.join(out, "gap-ready"), "w").close()
        until(f"cycle {i}: the primary NSS server to stop",
              lambda: os.path.exists(os.path.join(out, "primary-stopped")), 60)
    t0 = time.monotonic()
    subprocess.run(["ipsec", "-y", "activate", "alice-bob"], check=True, capture_output=True)

    def up():
        ks = [k for k in ipsec("-k", "display")
              if k["state"] == "done" and k["tunnel_id"] not in seen and k.get("certificate_service") == "nss"]
        ys = [y for y in ipsec("-y", "display") if y["state"] == "active"]
        return ks and ys and ys[0].get("parent_ike_tunnel_id") == ks[0]["tunnel_id"] and ks[0]["tunnel_id"]

    kid = until(f"cycle {i}: a new IKE SA signed through NSS with the tunnel under it", up, 60)
    print(f"cycle {i} {kid} secs={time.monotonic() - t0:.2f}", flush=True)
print(f"CYCLES ok={n}", flush=True)
