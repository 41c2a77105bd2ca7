#!/bin/sh
# Runs strongSwan's charon in network namespaces for ike-proto interop work.
#
#   charon-netns.sh up DIR          two namespaces $GK_NS_A (192.0.2.1) and $GK_NS_B (192.0.2.2)
#                                   joined by a veth pair, no charon yet (names default to
#                                   gk-ss-a and gk-ss-b)
#   charon-netns.sh charon DIR NS   start charon in namespace NS with DIR/NS/strongswan.conf
#                                   and DIR/NS/swanctl.conf (private /run; vici socket
#                                   DIR/NS/charon.vici); loads the swanctl config
#   charon-netns.sh down DIR        stop every charon started here and delete the namespaces
#
# The host kernel cannot install ESP states: CHILD_SA installation fails, IKE works.
set -eu
cmd=$1 dir=$2
A=${GK_NS_A:-gk-ss-a}
B=${GK_NS_B:-gk-ss-b}
case $cmd in
up)
    ip netns add "$A"
    ip netns add "$B"
    ip link add veth-a netns "$A" type veth peer name veth-b netns "$B"
    ip -n "$A" addr add 192.0.2.1/24 dev veth-a
    ip -n "$B" addr add 192.0.2.2/24 dev veth-b
    ip -n "$A" link set veth-a up
    ip -n "$B" link set veth-b up
    ip -n "$A" link set lo up
    ip -n "$B" link set lo up
    ;;
charon)
    ns=$3
    d=$dir/$ns
    rm -f "$d/charon.vici"
    ip netns exec "$ns" unshare -m sh -c "
        mount -t tmpfs tmpfs /run &&
        STRONGSWAN_CONF=$d/strongswan.conf exec /usr/lib/ipsec/charon >$d/charon.out 2>&1" &
    echo $! >"$d/charon.pid"
    i=0
    while [ ! -S "$d/charon.vici" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    swanctl --load-all --file "$d/swanctl.conf" --uri "unix://$d/charon.vici" >"$d/load.out" 2>&1
    ;;
down)
    for p in "$dir"/*/charon.pid; do
        [ -f "$p" ] || continue
        pid=$(cat "$p")
        # The recorded pid is the `ip netns exec` wrapper whose child is charon.
        for c in $(pgrep -P "$pid" 2>/dev/null) "$pid"; do kill "$c" 2>/dev/null || true; done
        rm -f "$p" "${p%/charon.pid}/charon.vici"
    done
    sleep 0.3
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    ;;
esac
