"""Configuration of the demo-scale benchmark's gateways (imported by bench.py).

Two iked processes run in the guest's root file system:
  moon  one iked serving K stacks moon1..moonK (network namespaces, hosts of
        the scenario's topology); stack s initiates M IKEv2 SAs, one from each
        of its M extra addresses, to sun (192.0.2.2), each with one
        tunnel-mode child SA (tunnel t: 10.1.t.0/24 <-> 10.2.t.0/24)
  sun   one iked serving the stack sun; one KeyExchangeRule answers all K*M
Every tunnel needs one RSA signature from each side. In both modes the
proposal is the demo's (IKE AES-GCM-256, PRF SHA-256, P-256; ESP AES-GCM-128):
  nss    the signatures and certificates come from the NSS server vault
         (examples/demo: user MOON by PassTicket, SUN by password); each
         stack is an NSS client of its own; the key ring (DIR/keyring)
         holds the CA certificate only
  local  the certificate and private key come from iked's own key ring
         (IkeConfig KeyRing DIR/keyring)
No filter profile: the filter is not what this benchmark measures.

moon's stacks start with the first KeyExchangeRule alone (DIR/p-STACK.conf,
no tunnel), so that iked fetches the certificate from the NSS server (or
loads it from its key ring) before the clock starts; the full policy is
DIR/policy-STACK.conf, which the driver moves in place before the SIGHUP
that starts the clock."""
import os

SUN = "192.0.2.2"
OFFER = ("KeyExchangeOffer { HowToEncrypt AES_GCM_16 KeyLength 256 "
         "PseudoRandomFunction HMAC_SHA2_256 DHGroup Group19 }")
DATA = "IpDataOffer { HowToEncrypt AES_GCM_16 KeyLength 128 }"


def pki():
    return os.path.join(os.environ["WORKSPACE"], "examples/demo/pki")


def moon_stacks(k):
    return [f"moon{s + 1}" for s in range(k)]


def tunnel_addr(t):
    """moon's address for tunnel t (0-based, across all stacks)."""
    return f"192.0.2.{101 + t}"


def _write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def _keyring(d, files, conf):
    k = os.path.join(d, "keyring")
    os.makedirs(k, mode=0o700, exist_ok=True)
    for f in files:
        with open(os.path.join(pki(), f), "rb") as src, open(os.path.join(k, f), "wb") as dst:
            dst.write(src.read())
    _write(k, "keyring.conf", conf)
    return k


def _iked_conf(gw, mode, d, stacks):
    """iked.conf for gateway gw (moon|sun) serving `stacks`."""
    if mode == "nss":
        k = _keyring(d, ["ca.pem"], "Certificate DEMOCA { Usage CertAuth File ca.pem }\n")
        if gw == "moon":
            with open(os.path.join(pki(), "../moon/nss-passticket.key"), "rb") as src:
                _write(d, "nss-passticket.key", src.read().decode())
            auth = f"UserId MOON AuthBy PassTicket PassTicketKeyFile {d}/nss-passticket.key"
        else:
            auth = "UserId SUN AuthBy Password Password sun-demo-password"
        conf = f"""IkeConfig
{{
  NetworkSecurityServer 192.0.2.10 Port 4159 Identity Fqdn vault.example.net
  NssWaitLimit 3
  NssWaitRetries 2
  KeyRing {k}   # the CA certificate only
}}
"""
        for s in stacks:
            conf += f"NssStackConfig {s} {{ ServiceType Cert ClientName {s.upper()} {auth} }}\n"
    else:
        k = _keyring(d, [f"{gw}.pem", f"{gw}.key", "ca.pem"],
                     f"Certificate {gw} {{ Usage Personal File {gw}.pem Key {gw}.key Default }}\n"
                     "Certificate CA { Usage CertAuth File ca.pem }\n")
        conf = f"IkeConfig {{ KeyRing {k} }}\n"
    for s in stacks:
        conf += f"StackConfig {s} {{ PolicyFile p-{s}.conf }}\n"
    _write(d, "iked.conf", conf)


def _auth(gw, mode):
    """(HowToAuthMe label, RemoteSecurityEndpoint CA) for the mode."""
    if mode == "nss":
        return "", ""
    return f"CertificateLabel {gw}", "CaLabel CA"


def _moon_policy(mode, first, count, tunnels=True):
    label, ca = _auth("moon", mode)
    parts = []
    for t in range(first, first + count):
        a = tunnel_addr(t)
        parts.append(f"""KeyExchangeRule k{t}
{{
  LocalSecurityEndpoint  {{ Identity Fqdn moon.example.net Location {a} }}
  RemoteSecurityEndpoint {{ Identity Fqdn sun.example.net Location {SUN} {ca} }}
  KeyExchangeAction {{ DpdInterval 0 HowToAuthMe RsaSignature {label} {OFFER} }}
}}
""")
        if tunnels:
            parts.append(f"""LocalDynVpnRule r{t}
{{
  IpSourceAddr 10.1.{t}.0/24
  IpDestAddr 10.2.{t}.0/24
  LocalSecurityEndpoint {a}
  RemoteSecurityEndpoint {SUN}
  IpDynVpnAction {{ {DATA} }}
  AutoActivate Yes
  OnDemand No
}}
""")
    return "".join(parts)


def _sun_policy(mode, n):
    label, ca = _auth("sun", mode)
    parts = [f"""KeyExchangeRule moons
{{
  LocalSecurityEndpoint  {{ Identity Fqdn sun.example.net Location {SUN} }}
  RemoteSecurityEndpoint {{ Identity Fqdn moon.example.net Location 192.0.2.0/24 {ca} }}
  KeyExchangeAction {{ DpdInterval 0 HowToAuthMe RsaSignature {label} {OFFER} }}
}}
"""]
    for t in range(n):
        parts.append(f"LocalDynVpnRule r{t} {{ IpSourceAddr 10.2.{t}.0/24 IpDestAddr 10.1.{t}.0/24\n"
                     f"  LocalSecurityEndpoint {SUN} RemoteSecurityEndpoint {tunnel_addr(t)} OnDemand No\n"
                     f"  IpDynVpnAction {{ {DATA} }} }}\n")
    return "".join(parts)


def write_moon(mode, k, m, d):
    os.makedirs(d, mode=0o700, exist_ok=True)
    stacks = moon_stacks(k)
    _iked_conf("moon", mode, d, stacks)
    for i, s in enumerate(stacks):
        _write(d, f"p-{s}.conf", _moon_policy(mode, i * m, 1, tunnels=False))
        _write(d, f"policy-{s}.conf", _moon_policy(mode, i * m, m))


def write_sun(mode, n, d):
    os.makedirs(d, mode=0o700, exist_ok=True)
    _iked_conf("sun", mode, d, ["sun"])
    _write(d, "p-sun.conf", _sun_policy(mode, n))
