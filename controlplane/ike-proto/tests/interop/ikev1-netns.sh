#!/bin/sh
# Network namespaces and a strongSwan charon for ike-proto's IKEv1 interoperability test.
#
#   ikev1-netns.sh up NS_A NS_B        namespaces NS_A (192.0.2.1, 10.1.0.1) and NS_B
#                                      (192.0.2.2, 10.2.0.1) joined by a veth pair
#   ikev1-netns.sh up-nat NS_A NS_R NS_B   NS_A (10.99.0.2) behind NS_R, which masquerades
#                                      (nftables) onto 192.0.2.1 towards NS_B (192.0.2.2)
#   ikev1-netns.sh charon DIR NS       charon in NS with a private /run, DIR/strongswan.conf
#                                      written here (kernel-libipsec: the host kernel has no
#                                      ESP, charon's userland ESP lets its CHILD_SAs install),
#                                      DIR/swanctl.conf loaded, vici at DIR/charon.vici,
#                                      log at DIR/charon.log; extra `charon { }` lines from
#                                      DIR/charon-extra.conf; without DIR/libipsec charon
#                                      uses the kernel (its SAs fail to install on the host)
#                                      and detects NAT for real
#   ikev1-netns.sh down DIR NS…        stop that charon, delete the namespaces
set -eu
cmd=$1
case $cmd in
up)
    a=$2 b=$3
    ip netns add "$a"
    ip netns add "$b"
    ip link add "v$a" netns "$a" type veth peer name "v$b" netns "$b"
    ip -n "$a" addr add 192.0.2.1/24 dev "v$a"
    ip -n "$b" addr add 192.0.2.2/24 dev "v$b"
    ip -n "$a" addr add 10.1.0.1/32 dev lo
    ip -n "$b" addr add 10.2.0.1/32 dev lo
    for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
    ip -n "$a" link set "v$a" up
    ip -n "$b" link set "v$b" up
    ;;
up-nat)
    a=$2 r=$3 b=$4
    for ns in "$a" "$r" "$b"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip link add "v$a" netns "$a" type veth peer name "v${r}a" netns "$r"
    ip link add "v${r}b" netns "$r" type veth peer name "v$b" netns "$b"
    ip -n "$a" addr add 10.99.0.2/24 dev "v$a"
    ip -n "$r" addr add 10.99.0.1/24 dev "v${r}a"
    ip -n "$r" addr add 192.0.2.1/24 dev "v${r}b"
    ip -n "$b" addr add 192.0.2.2/24 dev "v$b"
    ip -n "$a" link set "v$a" up
    ip -n "$r" link set "v${r}a" up
    ip -n "$r" link set "v${r}b" up
    ip -n "$b" link set "v$b" up
    ip -n "$a" route add default via 10.99.0.1
    ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$r" nft -f - <<NFT
table ip nat {
  chain post { type nat hook postrouting priority 100; oifname "v${r}b" masquerade; }
}
NFT
    ;;
charon)
    d=$2 ns=$3
    plugins="random nonce openssl aes sha1 sha2 md5 hmac gmp curve25519 gcm pem pkcs1 pkcs8 x509 pubkey revocation constraints kernel-netlink socket-default vici"
    [ -e "$d/libipsec" ] && plugins="kernel-libipsec $plugins"
    cat >"$d/strongswan.conf" <<CONF
charon {
  load = $plugins
  install_virtual_ip = no
  retransmit_tries = 3
  retransmit_timeout = 1
$(cat "$d/charon-extra.conf" 2>/dev/null || true)
  plugins { vici { socket = unix://$d/charon.vici } }
  filelog { log { path = $d/charon.log
                  flush_line = yes
                  default = 1
                  ike = 2
                  cfg = 2 } }
}
CONF
    rm -f "$d/charon.vici"
    ip netns exec "$ns" unshare -m sh -c "
        mount -t tmpfs tmpfs /run &&
        STRONGSWAN_CONF=$d/strongswan.conf exec /usr/lib/ipsec/charon >$d/charon.out 2>&1" &
    echo $! >"$d/charon.pid"
    i=0
    while [ ! -S "$d/charon.vici" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    swanctl --load-all --file "$d/swanctl.conf" --uri "unix://$d/charon.vici" >"$d/load.out" 2>&1
    ;;
down)
    d=$2
    shift 2
    if [ -f "$d/charon.pid" ]; then
        pid=$(cat "$d/charon.pid")
        for c in $(pgrep -P "$pid" 2>/dev/null) "$pid"; do kill "$c" 2>/dev/null || true; done
        rm -f "$d/charon.pid"
    fi
    sleep 0.2
    for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
    ;;
esac
