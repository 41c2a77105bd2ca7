#!/usr/bin/env python3
"""IKEv2 SA setup rate: gatekey iked vs strongSwan charon, same proposal
(PSK, Curve25519, AES-GCM-256 for IKE and ESP), transport-mode child SAs
installed in the kernel by both, N IKE SAs initiated at once from N local
addresses of moon to sun.

Usage (on moon):  bench.py gatekey|strongswan N RUN OUT
Prints one line `RESULT <impl> n=<N> secs=<s> per_s=<r>` and writes it to
OUT/<impl>-<RUN>.txt. Sun's daemon is started by the scenario; this script
only drives the initiator side."""
import os, subprocess, sys, time, json, signal

impl, n, run, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
SUN = "192.0.2.2"

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout

def gatekey_policy(rules):
    parts = []
    for i in range(rules):
        a = f"192.0.2.{101 + i}"
        parts.append(f"""
KeyExchangeRule k{i} {{
  LocalSecurityEndpoint {{ Identity IpAddr {a} Location {a} }}
  RemoteSecurityEndpoint {{ Identity IpAddr {SUN} Location {SUN} }}
  KeyExchangeAction {{ DpdInterval 0 KeyExchangeOffer {{ HowToEncrypt AES_GCM_16 KeyLength 256 PseudoRandomFunction HMAC_SHA2_256 DHGroup Group31 }} }}
  SharedKey Ascii "benchmark pre-shared key"
}}
LocalDynVpnRule r{i} {{
  IpSourceAddr {a}
  IpDestAddr {SUN}
  IpDynVpnAction {{ IpDataOffer {{ HowToEncap Transport HowToEncrypt AES_GCM_16 KeyLength 256 }} }}
  AutoActivate Yes
  OnDemand No
}}""")
    return "\n".join(parts)

def run_gatekey():
    d = "/run/bench-gk"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/iked.conf", "w") as f:
        f.write("StackConfig default { PolicyFile p.conf }\n")
    with open(f"{d}/p.conf", "w") as f:
        f.write("# empty until the measurement starts\n")
    log = open(f"{out}/iked-moon-{run}.log", "w")
    p = subprocess.Popen(["iked", "-f", f"{d}/iked.conf", "--nmi-socket", f"{d}/sock", "--log-target", "stderr", "--log-level", "warn"],
                         stderr=log, stdout=subprocess.DEVNULL)
    while not os.path.exists(f"{d}/sock"):
        time.sleep(0.05)
    with open(f"{d}/p.conf", "w") as f:
        f.write(gatekey_policy(n))
    env = dict(os.environ, IPSEC_IKED_SOCKET=f"{d}/sock")
    t0 = time.monotonic()
    p.send_signal(signal.SIGHUP)
    while True:
        s = json.loads(sh("ipsec -S display --json", env=env))
        st = s["statistics"]
        if st["p1_active"] >= n and st["p2_active"] >= n:
            break
        if time.monotonic() - t0 > 120:
            raise SystemExit(f"gatekey: only {st['p1_active']} of {n} IKE SAs after 120 s")
        time.sleep(0.05)
    secs = time.monotonic() - t0
    p.send_signal(signal.SIGTERM)
    p.wait()
    return secs

def run_strongswan():
    d = "/run/bench-sw"
    os.makedirs(d, exist_ok=True)
    conns = []
    for i in range(n):
        a = f"192.0.2.{101 + i}"
        conns.append(f"""  c{i} {{
    version = 2
    mobike = no
    local_addrs = {a}
    remote_addrs = {SUN}
    proposals = aes256gcm16-prfsha256-x25519
    local {{ auth = psk
            id = {a} }}
    remote {{ auth = psk
             id = {SUN} }}
    children {{ t {{ mode = transport
                   esp_proposals = aes256gcm16
                   start_action = start }} }}
  }}""")
    with open(f"{d}/swanctl.conf", "w") as f:
        f.write("connections {\n" + "\n".join(conns) + "\n}\n")
        f.write('secrets {\n  ike-all { secret = "benchmark pre-shared key" }\n}\n')
    env = dict(os.environ, SWANCTL_DIR=d)
    for stale in ("/run/charon.vici", "/run/charon.pid"):
        if os.path.exists(stale):
            os.remove(stale)
    log = open(f"{out}/charon-moon-{run}.log", "w")
    p = subprocess.Popen(["/usr/lib/ipsec/charon"], stderr=log, stdout=log)
    # charon takes a while to start under TCG; its start is not measured.
    deadline = time.monotonic() + 180
    while subprocess.run("swanctl --stats", shell=True, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("charon did not start")
        time.sleep(0.2)
    sh("swanctl --load-creds --noprompt", env=env)
    t0 = time.monotonic()
    sh("swanctl --load-conns", env=env)
    while True:
        stats = sh("swanctl --stats")
        # "IKE_SAs: 40 total, 0 half-open"
        line = next(l for l in stats.splitlines() if l.startswith("IKE_SAs:"))
        total = int(line.split()[1].rstrip(","))
        half = int(line.split()[3])
        if total - half >= n:
            # The child SAs come with IKE_AUTH: both SAs of each must be in
            # the kernel, as for gatekey (p2_active counts installed pairs).
            states = int(sh("ip xfrm state | grep -c '^src ' || true").strip() or 0)
            if states >= 2 * n:
                break
        if time.monotonic() - t0 > 300:
            raise SystemExit(f"strongswan: only {total - half} of {n} IKE SAs after 300 s")
        time.sleep(0.05)
    secs = time.monotonic() - t0
    p.send_signal(signal.SIGTERM)
    p.wait()
    return secs

secs = run_gatekey() if impl == "gatekey" else run_strongswan()
line = f"RESULT {impl} n={n} secs={secs:.3f} per_s={n / secs:.1f}"
print(line)
with open(f"{out}/{impl}-{run}.txt", "w") as f:
    f.write(line + "\n")
