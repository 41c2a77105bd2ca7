# Static transport-mode ESP between two hosts: AES-GCM-16, 128-bit key.
# usage: sh xfrm.sh LOCAL REMOTE SPI_OUT SPI_IN
set -e
local=$1 remote=$2 spi_out=$3 spi_in=$4
# 16 key bytes + 4 salt bytes, derived from the SPI so both sides agree
# (test keys only).
key() { echo "0x$(printf '%08x' "$1")0102030405060708090a0b0c0d0e0f10"; }
/sbin/ip xfrm state add src "$local" dst "$remote" proto esp spi "$spi_out" reqid 1 \
  mode transport aead 'rfc4106(gcm(aes))' "$(key "$spi_out")" 128
/sbin/ip xfrm state add src "$remote" dst "$local" proto esp spi "$spi_in" reqid 1 \
  mode transport aead 'rfc4106(gcm(aes))' "$(key "$spi_in")" 128
/sbin/ip xfrm policy add src "$local/32" dst "$remote/32" dir out \
  tmpl src "$local" dst "$remote" proto esp reqid 1 mode transport
/sbin/ip xfrm policy add src "$remote/32" dst "$local/32" dir in \
  tmpl src "$remote" dst "$local" proto esp reqid 1 mode transport
