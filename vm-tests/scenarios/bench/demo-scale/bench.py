#!/usr/bin/env python3
"""One timed run on moon: N IKEv2 SAs with RSA signatures, NSS-signed or
with local keys (see gw.py), initiated at once from N addresses to sun.

Usage (on moon):  bench.py nss|local N RUN OUT
moon's iked starts with an empty policy (for nss: and connects to vault as
NSS client MOON_default first; neither start is measured); the clock starts
at the SIGHUP that loads the N rules and stops when `ipsec -S display`
counts N active IKE SAs and N active child SAs. Afterwards `ipsec -k
display` must show N SAs with RsaSignature and the expected
CertificateService (NSS or Local). Prints `RESULT <mode> n=<N> secs=<s>
per_s=<r>` and writes it to OUT/<mode>-<RUN>.txt."""
import json, os, re, shutil, signal, subprocess, sys, time

mode, n, run, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
d = f"/run/ds-moon-{mode}"
sock = f"{d}/sock"
env = dict(os.environ, IPSEC_IKED_SOCKET=sock)

def sh(cmd):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, env=env).stdout

subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "gw.py"), "moon", mode, str(n), d], check=True)
if os.path.exists(sock):
    os.remove(sock)
log = open(f"{out}/iked-moon-{mode}-{run}.log", "w", buffering=1)
p = subprocess.Popen(["iked", "-f", f"{d}/iked.conf", "--nmi-socket", sock, "--log-target", "stderr", "--log-level", "info"],
                     stderr=log, stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 60
logname = f"{out}/iked-moon-{mode}-{run}.log"
# Initialization complete (EZD0911I): the NMI answers, SIGHUP is handled.
while not re.search(r"EZD0911I ", open(logname).read()):
    if time.monotonic() > deadline or p.poll() is not None:
        raise SystemExit("iked did not start")
    time.sleep(0.05)
if mode == "nss":
    # Connected to vault, and moon's certificate fetched (EZD1136I).
    while not (re.search(r"ConnectionState:\s+connected", sh("ipsec -w display"))
               and re.search(r"EZD1136I .*certificates \[MOON", open(logname).read())):
        if time.monotonic() > deadline:
            raise SystemExit("moon: no NSS certificate service from vault after 60 s:\n" + sh("ipsec -w display"))
        time.sleep(0.1)
os.replace(f"{d}/policy.conf", f"{d}/p.conf")
t0 = time.monotonic()
p.send_signal(signal.SIGHUP)
while True:
    st = json.loads(sh("ipsec -S display --json"))["statistics"]
    if st["p1_active"] >= n and st["p2_active"] >= n:
        break
    if time.monotonic() - t0 > 180:
        raise SystemExit(f"{mode}: only {st['p1_active']} IKE SAs, {st['p2_active']} child SAs of {n} after 180 s")
    time.sleep(0.05)
secs = time.monotonic() - t0
k = sh("ipsec -k display")
want = "NSS" if mode == "nss" else "Local"
got = len(re.findall(rf"CertificateService:\s+{want}\b", k))
rsa = len(re.findall(r"LocalAuthenticationMethod:\s+RsaSignature", k))
p.send_signal(signal.SIGTERM)
p.wait()
if mode == "local":
    shutil.rmtree(d)  # no private key left for the next NSS run
if got < n or rsa < n:
    raise SystemExit(f"{mode}: {got} SAs with CertificateService {want}, {rsa} with RsaSignature, of {n}:\n{k}")
line = f"RESULT {mode} n={n} secs={secs:.3f} per_s={n / secs:.2f}"
print(line)
with open(f"{out}/{mode}-{run}.txt", "w") as f:
    f.write(line + "\n")
