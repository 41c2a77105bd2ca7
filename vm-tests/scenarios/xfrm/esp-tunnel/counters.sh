# Check an SA's counters as read through gatekey-xfrm against the kernel's own report
# (`ip -s xfrm state get`) and against the number of packets that were sent.
#
#   sh counters.sh SRC DST SPI PROTO PACKETS BYTES
#
# BYTES is what the packets carried as the SA sees them: the inner IP datagram in tunnel mode
# (ping's 56 data bytes + ICMP 8 + IPv4 20 = 84, or + IPv6 40 = 104), the IP payload in
# transport mode (64). Prints `counters SPI bytes=B packets=P (ip: …)`; fails on any mismatch.
set -eu
src=$1 dst=$2 spi=$3 proto=$4 want=$5 want_bytes=$6
out=$("${EXAMPLES:?}/xfrm-counters" --dst "$dst" --spi "$spi" --proto "$proto")
bytes=$(printf '%s\n' "$out" | sed -n 's/.*bytes=\([0-9]*\) .*/\1/p')
packets=$(printf '%s\n' "$out" | sed -n 's/.*packets=\([0-9]*\) .*/\1/p')
kern=$(/sbin/ip -s xfrm state get src "$src" dst "$dst" proto "$proto" spi "$spi" |
  sed -n 's/^[[:space:]]*\([0-9]*\)(bytes), \([0-9]*\)(packets).*/\1 \2/p' | head -1)
kbytes=${kern% *} kpackets=${kern#* }
echo "counters $spi bytes=$bytes packets=$packets (ip: $kbytes bytes, $kpackets packets)"
[ "$packets" = "$want" ] || { echo "FAIL: $packets packets, sent $want"; exit 1; }
[ "$bytes" = "$want_bytes" ] || { echo "FAIL: $bytes bytes, sent $want_bytes"; exit 1; }
[ "$bytes" = "$kbytes" ] && [ "$packets" = "$kpackets" ] || { echo "FAIL: crate and kernel disagree"; exit 1; }
