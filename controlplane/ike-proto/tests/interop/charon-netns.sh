#!/bin/sh
# Runs strongSwan's charon in network namespaces for ike-proto interop work.
#
#   charon-netns.sh up DIR          two namespaces gk-ss-a (192.0.2.1) and gk-ss-b (192.0.2.2)
#                                   joined by a veth pair, no charon yet
#   charon-netns.sh charon DIR NS   start charon in namespace NS with DIR/NS/strongswan.conf
#                                   and DIR/NS/swanctl.conf (private /run; vici socket
#                                   DIR/NS/charon.vici); loads the swanctl config
#   charon-netns.sh down DIR        stop every charon started here and delete the namespaces
#
# The host kernel cannot install ESP states: CHILD_SA installation fails, IKE works.
set -eu
cmd=$1 dir=$2
case $cmd in
up)
    ip netns add gk-ss-a
    ip netns add gk-ss-b
    ip link add gk-ss-va netns gk-ss-a type veth peer name gk-ss-vb netns gk-ss-b
    ip -n gk-ss-a addr add 192.0.2.1/24 dev gk-ss-va
    ip -n gk-ss-b addr add 192.0.2.2/24 dev gk-ss-vb
    ip -n gk-ss-a link set gk-ss-va up
    ip -n gk-ss-b link set gk-ss-vb up
    ip -n gk-ss-a link set lo up
    ip -n gk-ss-b link set lo up
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
    ip netns del gk-ss-a 2>/dev/null || true
    ip netns del gk-ss-b 2>/dev/null || true
    ;;
esac
