#!/bin/sh
# Regenerates the demo PKI in this directory (the committed files were made
# by this script). Demo only: these keys protect nothing.
#   ca      RSA 2048, "gatekey demo CA", 10 years
#   moon    RSA 2048, SAN DNS:moon.example.net   (gateway, signs IKE through NSS)
#   sun     RSA 2048, SAN DNS:sun.example.net    (gateway)
#   vault   EC P-256, SAN DNS:vault.example.net IP:192.0.2.10  (NSS server TLS)
#   vault2  EC P-256, SAN DNS:vault2.example.net IP:192.0.2.11 (backup NSS server TLS)
# `sh make-pki.sh NAME rsa|ec SAN` issues one more certificate from ca.key
# (SAN as openssl writes it, e.g. DNS:gw3.example.net).
set -e
cd "$(dirname "$0")"
issue() { # name rsa|ec SAN extensions
  if [ "$2" = rsa ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
  fi
  openssl req -new -key "$1.key" -subj "/O=gatekey demo/CN=${3#*:}" -out "$1.csr" 2>/dev/null
  SAN="$3" openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 3650 -extfile openssl-ext.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" ca.srl
  chmod 600 "$1.key"
}
if [ $# -eq 3 ]; then
  issue "$1" "$2" "$3" gw
  exit 0
fi
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/O=gatekey demo/CN=gatekey demo CA" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem
issue moon rsa DNS:moon.example.net gw
issue sun rsa DNS:sun.example.net gw
issue vault ec "DNS:vault.example.net,IP:192.0.2.10" srv
issue vault2 ec "DNS:vault2.example.net,IP:192.0.2.11" srv
