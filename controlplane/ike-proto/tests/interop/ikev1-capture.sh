#!/bin/sh
# Captures an IKEv1 negotiation between two strongSwan charons for ike-proto's IKEv1 vectors.
#
#   ikev1-capture.sh CASE_DIR [WAIT_SECONDS]
#
# CASE_DIR holds initiator-swanctl.conf and responder-swanctl.conf (connection `gk`, child
# `gk`; the initiator is 192.0.2.1, the responder 192.0.2.2) and optionally a `pki/`
# directory copied to both sides' swanctl dirs. The script creates namespaces gk-v1-a and
# gk-v1-b joined by a veth pair, runs charon in each with `ike = 4, chd = 4` logging,
# captures UDP 500/4500 in gk-v1-a, initiates the child, waits WAIT_SECONDS (default 4),
# terminates the IKE SA (DELETE informationals), and writes CASE_DIR/capture.pcap,
# CASE_DIR/initiator.log and CASE_DIR/responder.log. `extract-ikev1.py` turns those into
# `NN-*.bin` datagrams and `keys.txt`. Lines in CASE_DIR/charon-extra.conf are added to both
# charons' `charon { }` section.
#
# The host kernel cannot install ESP states: charon's SA installation fails after the keys
# were derived and logged, which is all the vectors need.
set -eu
case_dir=$(cd "$1" && pwd)
wait_s=${2:-4}
work=$(mktemp -d /tmp/gk-ikev1-XXXXXX)
a=gk-v1-a b=gk-v1-b

cleanup() {
    for p in "$work"/*/charon.pid; do
        [ -f "$p" ] || continue
        pid=$(cat "$p")
        for c in $(pgrep -P "$pid" 2>/dev/null) "$pid"; do kill "$c" 2>/dev/null || true; done
    done
    [ -f "$work/tcpdump.pid" ] && kill "$(cat "$work/tcpdump.pid")" 2>/dev/null || true
    sleep 0.3
    ip netns del $a 2>/dev/null || true
    ip netns del $b 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add $a
ip netns add $b
ip link add gk-v1-va netns $a type veth peer name gk-v1-vb netns $b
ip -n $a addr add 192.0.2.1/24 dev gk-v1-va
ip -n $b addr add 192.0.2.2/24 dev gk-v1-vb
for ns in $a $b; do ip -n $ns link set lo up; done
ip -n $a link set gk-v1-va up
ip -n $b link set gk-v1-vb up

start_charon() { # ns role
    d=$work/$1
    mkdir -p "$d/swanctl"
    cp "$case_dir/$2-swanctl.conf" "$d/swanctl/swanctl.conf"
    [ -d "$case_dir/pki/$2" ] && cp -r "$case_dir/pki/$2/." "$d/swanctl/"
    cat >"$d/strongswan.conf" <<CONF
charon {
  load = random nonce openssl aes sha1 sha2 md5 hmac gmp curve25519 gcm pem pkcs1 pkcs8 x509 pubkey revocation constraints kernel-netlink socket-default vici
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = 2
$(cat "$case_dir/charon-extra.conf" 2>/dev/null || true)
  plugins { vici { socket = unix://$d/charon.vici } }
  filelog { log { path = $d/charon.log
                  flush_line = yes
                  default = 1
                  ike = 4
                  chd = 4
                  enc = 2
                  net = 2 } }
}
CONF
    ip netns exec "$1" unshare -m sh -c "
        mount -t tmpfs tmpfs /run &&
        STRONGSWAN_CONF=$d/strongswan.conf exec /usr/lib/ipsec/charon >$d/charon.out 2>&1" &
    echo $! >"$d/charon.pid"
    i=0
    while [ ! -S "$d/charon.vici" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    swanctl --load-all --file "$d/swanctl/swanctl.conf" --uri "unix://$d/charon.vici" >"$d/load.out" 2>&1 ||
        { cat "$d/load.out"; exit 1; }
}

start_charon $b responder
start_charon $a initiator
ip netns exec $a tcpdump -i gk-v1-va -w "$work/capture.pcap" -U 'udp port 500 or udp port 4500' \
    >/dev/null 2>&1 &
echo $! >"$work/tcpdump.pid"
sleep 0.5
swanctl --initiate --child gk --timeout 10 --uri "unix://$work/$a/charon.vici" >"$work/initiate.out" 2>&1 || true
sleep "$wait_s"
swanctl --terminate --ike gk --timeout 5 --uri "unix://$work/$a/charon.vici" >"$work/terminate.out" 2>&1 || true
sleep 1
kill "$(cat "$work/tcpdump.pid")" 2>/dev/null || true
rm -f "$work/tcpdump.pid"
sleep 0.3
cp "$work/capture.pcap" "$case_dir/capture.pcap"
cp "$work/$a/charon.log" "$case_dir/initiator.log"
cp "$work/$b/charon.log" "$case_dir/responder.log"
cat "$work/initiate.out"
