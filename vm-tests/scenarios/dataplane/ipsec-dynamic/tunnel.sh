# Static tunnel-mode ESP between two gateways: AES-GCM-16, 128-bit key,
# request id 7 (the dynamic filter checks it).
# usage: sh tunnel.sh LOCAL REMOTE LOCAL_NET REMOTE_NET SPI_OUT SPI_IN
set -e
local=$1 remote=$2 lnet=$3 rnet=$4 spi_out=$5 spi_in=$6
key() { echo "0x$(printf '%08x' "$1")0102030405060708090a0b0c0d0e0f10"; }
ip xfrm state add src "$local" dst "$remote" proto esp spi "$spi_out" reqid 7 \
  mode tunnel aead 'rfc4106(gcm(aes))' "$(key "$spi_out")" 128
ip xfrm state add src "$remote" dst "$local" proto esp spi "$spi_in" reqid 7 \
  mode tunnel aead 'rfc4106(gcm(aes))' "$(key "$spi_in")" 128
ip xfrm policy add src "$lnet" dst "$rnet" dir out \
  tmpl src "$local" dst "$remote" proto esp reqid 7 mode tunnel
for dir in in fwd; do
  ip xfrm policy add src "$rnet" dst "$lnet" dir $dir \
    tmpl src "$remote" dst "$local" proto esp reqid 7 mode tunnel
done
