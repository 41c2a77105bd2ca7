#!/usr/bin/env python3
"""The demo-scale benchmark's driver (runs on the guest's root, see gw.py).

Usage:  bench.py K M ROUNDS OUT

K stacks moon1..moonK, served by one iked, each set up M IKEv2 SAs with RSA
signatures (and a child SA each) to the stack sun, served by a second iked:
NSS-signed, then with local keys, ROUNDS times (odd rounds NSS first, even
rounds local first). Before the rounds, one ESP SA with the benchmark's
algorithm is installed and removed: the kernel's first SA of an algorithm
instantiates and self-tests its crypto (1-2 s in a TCG guest), a one-off cost
that would otherwise land on whichever run comes first.

A run: write both configurations (for nss: check that no private key file is
left anywhere a gateway can read), start both iked, wait until every stack is
up (for nss: connected to vault with its certificate fetched, EZD1136I);
then the clock starts at the SIGHUP that loads moon's full policies and
stops when moon's log shows K*M child SAs installed (EZD0939I). Afterwards
`ipsec -k display` must show M SAs with RsaSignature and the mode's
CertificateService on every moon stack, and `ipsec -S display` K*M active
IKE and child SAs on sun. Each run prints `RESULT <mode> n=<K*M> secs=<s>
per_s=<r>` and writes it to OUT/<mode>-<round>.txt."""
import json, os, re, shutil, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gw  # noqa: E402

k, m, rounds, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
n = k * m
stacks = gw.moon_stacks(k)
BASE = "/run/ds"
KEY = re.compile(rb"BEGIN ([A-Z]+ )?PRIVATE KEY")
os.umask(0o077)  # key rings and the PassTicket key: owner only


def ip(args, netns=None, stdin=None):
    cmd = ["ip"] + (["-n", netns] if netns else []) + args
    subprocess.run(cmd, check=True, input=stdin, text=True, capture_output=True)


def ipsec(sock, args):
    env = dict(os.environ, IPSEC_IKED_SOCKET=sock)
    return subprocess.run(["ipsec"] + args, check=True, capture_output=True, text=True, env=env).stdout


def private_keys():
    """Files under the gateways' /etc/security, /run, /var and /tmp that hold a
    private key (the workspace, bound into the guest, is not the gateways')."""
    skip = {os.path.realpath(os.environ["WORKSPACE"])}
    found = []
    for top in ("/etc/security", "/run", "/var", "/tmp"):
        for root, dirs, files in os.walk(top):
            dirs[:] = [x for x in dirs if os.path.realpath(os.path.join(root, x)) not in skip]
            for f in files:
                p = os.path.join(root, f)
                try:
                    if os.path.isfile(p) and not os.path.islink(p):
                        with open(p, "rb") as fh:
                            if KEY.search(fh.read(1 << 20)):
                                found.append(p)
                except OSError:
                    pass
    return found


def log_text(path):
    with open(path) as f:
        return f.read()


def wait_for(what, cond, timeout, procs):
    deadline = time.monotonic() + timeout
    while not cond():
        for name, p in procs:
            if p.poll() is not None:
                raise SystemExit(f"{what}: iked {name} exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not after {timeout} s")
        time.sleep(0.02)


def start(name, d, log):
    if os.path.exists(f"{d}/sock"):
        os.remove(f"{d}/sock")
    f = open(log, "w", buffering=1)
    return subprocess.Popen(["iked", "-f", f"{d}/iked.conf", "--nmi-socket", f"{d}/sock",
                             "--log-target", "stderr", "--log-level", "info"],
                            stderr=f, stdout=subprocess.DEVNULL)


def flush():
    """A clean kernel state in every stack (iked leaves policies in force when it stops)."""
    for ns in stacks + ["sun"]:
        ip(["xfrm", "state", "flush"], ns)
        ip(["xfrm", "policy", "flush"], ns)


def run(mode, rnd):
    base = f"{BASE}/{mode}"
    shutil.rmtree(base, ignore_errors=True)
    md, sd = f"{base}/moon", f"{base}/sun"
    gw.write_sun(mode, n, sd)
    gw.write_moon(mode, k, m, md)
    if mode == "nss":
        keys = private_keys()
        if keys:
            raise SystemExit(f"nss run {rnd}: private key files on the gateways: {keys}")
    flush()
    mlog, slog = f"{out}/iked-moon-{mode}-{rnd}.log", f"{out}/iked-sun-{mode}-{rnd}.log"
    sun = start("sun", sd, slog)
    moon = start("moon", md, mlog)
    procs = [("sun", sun), ("moon", moon)]
    try:
        wait_for(f"{mode} run {rnd}: initialization (EZD0911I)",
                 lambda: "EZD0911I" in log_text(slog) and "EZD0911I" in log_text(mlog), 60, procs)
        if mode == "nss":
            wait_for(f"{mode} run {rnd}: every stack's certificate from vault (EZD1136I)",
                     lambda: all(re.search(rf"EZD1136I Stack {s}: .*certificates \[MOON", log_text(mlog))
                                 for s in stacks)
                     and re.search(r"EZD1136I Stack sun: .*certificates \[SUN", log_text(slog)),
                     60, procs)
        for s in stacks:
            os.replace(f"{md}/policy-{s}.conf", f"{md}/p-{s}.conf")
        t0 = time.monotonic()
        moon.send_signal(signal.SIGHUP)
        wait_for(f"{mode} run {rnd}: {n} child SAs on moon (EZD0939I)",
                 lambda: log_text(mlog).count("EZD0939I ") >= n, 300, procs)
        secs = time.monotonic() - t0
        want = "NSS" if mode == "nss" else "Local"
        for s in stacks:
            kd = ipsec(f"{md}/sock", ["-p", s, "-k", "display"])
            got = len(re.findall(rf"CertificateService:\s+{want}\b", kd))
            rsa = len(re.findall(r"LocalAuthenticationMethod:\s+RsaSignature", kd))
            if got != m or rsa != m:
                raise SystemExit(f"{mode} run {rnd}: stack {s}: {got} SAs with CertificateService "
                                 f"{want}, {rsa} with RsaSignature, of {m}:\n{kd}")
        st = json.loads(ipsec(f"{sd}/sock", ["-p", "sun", "-S", "display", "--json"]))["statistics"]
        if st["p1_active"] < n or st["p2_active"] < n:
            raise SystemExit(f"{mode} run {rnd}: sun has {st['p1_active']} IKE SAs, "
                             f"{st['p2_active']} child SAs of {n}")
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            p.wait()
    if mode == "local":
        shutil.rmtree(base)  # no private key left for the next NSS run
    line = f"RESULT {mode} n={n} secs={secs:.3f} per_s={n / secs:.2f}"
    print(f"round {rnd}: {line}", flush=True)
    with open(f"{out}/{mode}-{rnd}.txt", "w") as f:
        f.write(line + "\n")


# moon's addresses: stack s has tunnel_addr(s*M .. s*M+M-1)
for i, s in enumerate(stacks):
    batch = "".join(f"address add {gw.tunnel_addr(i * m + j)}/24 dev eth0\n" for j in range(m))
    ip(["-batch", "-"], s, stdin=batch)

# the kernel's one-off crypto set-up for the ESP algorithm (rfc4106(gcm(aes)), 128-bit key)
warm = []
for spi in (0x100, 0x101):
    t = time.monotonic()
    ip(["xfrm", "state", "add", "src", "192.0.2.2", "dst", "192.0.2.1", "proto", "esp", "spi", hex(spi),
        "mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x" + "11" * 20, "128"], "sun")
    warm.append(time.monotonic() - t)
flush()
print(f"WARMUP first_esp_sa_install_s={warm[0]:.3f} second_s={warm[1]:.3f}", flush=True)

for rnd in range(1, rounds + 1):
    for mode in (("nss", "local") if rnd % 2 else ("local", "nss")):
        run(mode, rnd)
print(f"DONE rounds={rounds} stacks={k} tunnels={n}")
