# A UDP socket on port 4500 as an IKE daemon opens it: UDP_ENCAP_ESPINUDP set, so the kernel
# hands ESP-in-UDP arriving on 4500 to XFRM, and per-socket bypass policies (IP_XFRM_POLICY,
# allow in and out), because the kernel checks the *outer* UDP datagram against the inbound
# policies before it looks at the encapsulation: a host policy that covers the peers' addresses
# would otherwise drop it (XfrmInTmplMismatch). Runs until killed.
import socket
import struct
import time

UDP_ENCAP = 100
UDP_ENCAP_ESPINUDP = 2
IP_XFRM_POLICY = 17
INF = 0xFFFFFFFFFFFFFFFF


def bypass(direction):
    """struct xfrm_userpolicy_info: any selector, no lifetime limits, action allow."""
    # xfrm_selector: addresses, ports and masks zero (any), family AF_INET at offset 40
    selector = bytes(40) + struct.pack("=H", socket.AF_INET) + bytes(14)
    lft = struct.pack("=8Q", INF, INF, INF, INF, 0, 0, 0, 0)
    cur = bytes(32)
    tail = struct.pack("=IIBBBB4x", 0, 0, direction, 0, 0, 0)
    return selector + lft + cur + tail


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 4500))
s.setsockopt(socket.IPPROTO_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
for d in (0, 1):  # XFRM_POLICY_IN, XFRM_POLICY_OUT
    s.setsockopt(socket.IPPROTO_IP, IP_XFRM_POLICY, bypass(d))
print("encap socket ready", flush=True)
while True:
    time.sleep(3600)
