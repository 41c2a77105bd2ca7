# Install a pair of SAs and the matching policies with gatekey-xfrm's example programs.
#
#   sh pair.sh LOCAL REMOTE SPI_OUT SPI_IN MODE PROTO SA-ARGS…
#
# MODE: tunnel | transport. PROTO (of the policy templates): esp | ah. SA-ARGS choose the
# algorithms, with KEYn / IKEYn standing for an n-byte key / integrity key:
#   --aead aes-gcm-256 KEY36
#   --cipher aes-cbc-256 KEY32 --integrity sha512 IKEY64
#   --ah --integrity sha256 IKEY32
# and may add --encap 4500:4500, --soft-bytes N, … (passed on to xfrm-sa-add). Keys are test
# keys derived from the SPI, so both hosts compute the same ones.
# Environment: POLICIES=no installs only the SAs; ACQUIRE_SEQ=N marks the outbound SA as the
# answer to the kernel's ACQUIRE number N.
set -eu
X=${EXAMPLES:?run from a VM scenario}
local=$1 remote=$2 spi_out=$3 spi_in=$4 mode=$5 proto=$6
shift 6
key() { # SPI BYTES
  h=$(printf '%08x' "$1")
  while [ ${#h} -lt $(($2 * 2)) ]; do h="${h}5a"; done
  printf '0x%s' "$(printf '%s' "$h" | cut -c1-$(($2 * 2)))"
}
add_sa() { # SRC DST SPI SA-ARGS…
  src=$1 dst=$2 spi=$3
  shift 3
  n=$#
  for a in "$@"; do
    case $a in
      KEY*) set -- "$@" --key "$(key "$spi" "${a#KEY}")" ;;
      IKEY*) set -- "$@" --integrity-key "$(key $((spi + 1)) "${a#IKEY}")" ;;
      *) set -- "$@" "$a" ;;
    esac
  done
  shift "$n"
  "$X/xfrm-sa-add" --src "$src" --dst "$dst" --spi "$spi" --mode "$mode" --reqid 1 "$@"
}
case $local in *:*) plen=128 ;; *) plen=32 ;; esac
add_sa "$local" "$remote" "$spi_out" --acquire-seq "${ACQUIRE_SEQ:-0}" "$@"
add_sa "$remote" "$local" "$spi_in" "$@"
[ "${POLICIES:-yes}" = no ] && exit 0
if [ "$mode" = tunnel ]; then
  "$X/xfrm-policy-add" --src "$local/$plen" --dst "$remote/$plen" --dir out --reqid 1 \
    --tmpl-proto "$proto" --tmpl-src "$local" --tmpl-dst "$remote"
  "$X/xfrm-policy-add" --src "$remote/$plen" --dst "$local/$plen" --dir in --reqid 1 \
    --tmpl-proto "$proto" --tmpl-src "$remote" --tmpl-dst "$local"
else
  "$X/xfrm-policy-add" --src "$local/$plen" --dst "$remote/$plen" --dir out --reqid 1 \
    --tmpl-proto "$proto" --tmpl-mode transport
  "$X/xfrm-policy-add" --src "$remote/$plen" --dst "$local/$plen" --dir in --reqid 1 \
    --tmpl-proto "$proto" --tmpl-mode transport
fi
