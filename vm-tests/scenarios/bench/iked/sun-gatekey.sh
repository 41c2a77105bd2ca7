# sun's iked: one KeyExchangeRule for any of moon's addresses and one
# transport-mode LocalDynVpnRule per moon address.
set -e
N=$1
D=/run/sun-gk
mkdir -p $D
echo 'StackConfig default { PolicyFile p.conf }' > $D/iked.conf
{
  echo 'KeyExchangeRule moons {'
  echo '  LocalSecurityEndpoint { Identity IpAddr 192.0.2.2 Location 192.0.2.2 }'
  echo '  RemoteSecurityEndpoint { Location 192.0.2.0/24 }'
  echo '  KeyExchangeAction { DpdInterval 0 KeyExchangeOffer { HowToEncrypt AES_GCM_16 KeyLength 256 PseudoRandomFunction HMAC_SHA2_256 DHGroup Group31 } }'
  echo '  SharedKey Ascii "benchmark pre-shared key"'
  echo '}'
  i=0
  while [ $i -lt $N ]; do
    a=192.0.2.$((101 + i))
    echo "LocalDynVpnRule r$i { IpSourceAddr 192.0.2.2 IpDestAddr $a OnDemand No"
    echo "  IpDynVpnAction { IpDataOffer { HowToEncap Transport HowToEncrypt AES_GCM_16 KeyLength 256 } } }"
    i=$((i + 1))
  done
} > $D/p.conf
