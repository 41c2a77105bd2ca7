#!/usr/bin/env python3
"""Write one gateway's iked configuration for the demo-scale benchmark.

Usage:  gw.py moon|sun nss|local N DIR

moon initiates N IKEv2 SAs, one from each of 192.0.2.101..(100+N), to sun
(192.0.2.2), each with one tunnel-mode child SA (tunnel i: 10.1.i.0/24 <->
10.2.i.0/24, the demo's shape); sun answers all of them with one
KeyExchangeRule. Both authenticate with RSA signatures:
  nss    the signature and the certificate come from the NSS server vault
         (examples/demo: user MOON by PassTicket, SUN by password); the
         gateway's key ring (DIR/keyring) holds the CA certificate only
  local  the certificate and private key come from the gateway's own key
         ring (IkeConfig KeyRing DIR/keyring)
Key rings and the PassTicket key are copied from examples/demo. No filter
profile: the demo's default IP filter policy would only let 192.0.2.1 talk
IKE, and the filter is not what this benchmark measures.
Same proposal in both modes (the demo's: AES-GCM-256, P-256, AES-GCM-128 ESP).

For moon the policy goes to DIR/policy.conf (bench.py swaps it in when the
measurement starts); DIR/p.conf starts with the first KeyExchangeRule only
(no tunnel), so that iked fetches its certificate from the NSS server (or
loads it from its key ring) before the clock starts: a refresh that adds the
first signing rule makes iked fetch the certificate then, and tunnels
activated before it arrives fail. For sun DIR/p.conf is the policy."""
import os, sys

host, mode, n, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
assert host in ("moon", "sun") and mode in ("nss", "local")
PKI = os.path.join(os.environ["WORKSPACE"], "examples/demo/pki")
SUN = "192.0.2.2"
OFFER = ("KeyExchangeOffer { HowToEncrypt AES_GCM_16 KeyLength 256 "
         "PseudoRandomFunction HMAC_SHA2_256 DHGroup Group19 }")
os.umask(0o077)
os.makedirs(d, exist_ok=True)

def write(name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)

def keyring(files, conf):
    k = os.path.join(d, "keyring")
    os.makedirs(k, mode=0o700, exist_ok=True)
    for f in files:
        with open(os.path.join(PKI, f), "rb") as src, open(os.path.join(k, f), "wb") as dst:
            dst.write(src.read())
    with open(os.path.join(k, "keyring.conf"), "w") as f:
        f.write(conf)
    return k

if mode == "nss":
    k = keyring(["ca.pem"], "Certificate DEMOCA { Usage CertAuth File ca.pem }\n")
    with open(os.path.join(PKI, "../moon/nss-passticket.key"), "rb") as src:
        write("nss-passticket.key", src.read().decode())
    nss = {
        "moon": f"UserId MOON AuthBy PassTicket PassTicketKeyFile {d}/nss-passticket.key",
        "sun": "UserId SUN AuthBy Password Password sun-demo-password",
    }[host]
    ike = f"""IkeConfig
{{
  NetworkSecurityServer 192.0.2.10 Port 4159 Identity Fqdn vault.example.net
  NssWaitLimit 3
  NssWaitRetries 2
  KeyRing {k}   # the CA certificate only
}}
NssStackConfig default {{ ServiceType Cert {nss} }}
"""
    label, ca = "", ""
else:
    k = keyring([f"{host}.pem", f"{host}.key", "ca.pem"],
                f"Certificate {host} {{ Usage Personal File {host}.pem Key {host}.key Default }}\n"
                "Certificate CA { Usage CertAuth File ca.pem }\n")
    ike = f"IkeConfig {{ KeyRing {k} }}\n"
    label, ca = f"CertificateLabel {host}", "CaLabel CA"
write("iked.conf", ike + "StackConfig default { PolicyFile p.conf }\n")

def moon_policy(count, tunnels=True):
    parts = []
    for i in range(count):
        a = f"192.0.2.{101 + i}"
        parts.append(f"""KeyExchangeRule k{i}
{{
  LocalSecurityEndpoint  {{ Identity Fqdn moon.example.net Location {a} }}
  RemoteSecurityEndpoint {{ Identity Fqdn sun.example.net Location {SUN} {ca} }}
  KeyExchangeAction {{ DpdInterval 0 HowToAuthMe RsaSignature {label} {OFFER} }}
}}
""")
        if not tunnels:
            continue
        parts.append(f"""LocalDynVpnRule r{i}
{{
  IpSourceAddr 10.1.{i}.0/24
  IpDestAddr 10.2.{i}.0/24
  LocalSecurityEndpoint {a}
  RemoteSecurityEndpoint {SUN}
  IpDynVpnAction {{ IpDataOffer {{ HowToEncrypt AES_GCM_16 KeyLength 128 }} }}
  AutoActivate Yes
  OnDemand No
}}
""")
    return "".join(parts)

def sun_policy():
    parts = [f"""KeyExchangeRule moons
{{
  LocalSecurityEndpoint  {{ Identity Fqdn sun.example.net Location {SUN} }}
  RemoteSecurityEndpoint {{ Identity Fqdn moon.example.net Location 192.0.2.0/24 {ca} }}
  KeyExchangeAction {{ DpdInterval 0 HowToAuthMe RsaSignature {label} {OFFER} }}
}}
"""]
    for i in range(n):
        a = f"192.0.2.{101 + i}"
        parts.append(f"LocalDynVpnRule r{i} {{ IpSourceAddr 10.2.{i}.0/24 IpDestAddr 10.1.{i}.0/24\n"
                     f"  LocalSecurityEndpoint {SUN} RemoteSecurityEndpoint {a} OnDemand No\n"
                     "  IpDynVpnAction { IpDataOffer { HowToEncrypt AES_GCM_16 KeyLength 128 } } }\n")
    return "".join(parts)

if host == "moon":
    write("policy.conf", moon_policy(n))
    write("p.conf", moon_policy(1, tunnels=False))
else:
    write("p.conf", sun_policy())
