#!/bin/sh
# Install one demo host's configuration: sh install.sh HOST [ROOT]
#   HOST: vault | vault2 (NSS servers), moon | sun (gateways)
#   ROOT: where /etc lives (default /); files go to ROOT/etc/security.
# The demo (`cargo xtask demo`) and the nss VM scenarios run this in each
# host's namespace. Modes matter: keyrings refuse keys readable by others.
set -e
HOST=$1
ROOT=${2:-}
D=$(cd "$(dirname "$0")" && pwd)
S=$ROOT/etc/security
umask 077
mkdir -p "$S"
case "$HOST" in
  vault|vault2)
    install -m 0644 "$D/vault/nssd.conf" "$S/nssd.conf"
    install -m 0600 "$D/vault/nssd.saf" "$S/nssd.saf"
    install -m 0600 "$D/vault/nssd.ptkt" "$S/nssd.ptkt"
    K=$S/nssd/keyring
    mkdir -p -m 0700 "$S/nssd" "$K"
    install -m 0600 "$D/vault/keyring.conf" "$K/keyring.conf"
    for f in moon.pem moon.key sun.pem sun.key ca.pem; do install -m 0600 "$D/pki/$f" "$K/$f"; done
    T=$S/nssd/tls
    mkdir -p -m 0700 "$T"
    install -m 0600 "$D/vault/tls.conf" "$T/keyring.conf"
    install -m 0600 "$D/pki/$HOST.pem" "$T/server.pem"
    install -m 0600 "$D/pki/$HOST.key" "$T/server.key"
    install -m 0600 "$D/pki/ca.pem" "$T/ca.pem"
    ;;
  moon|sun)
    install -m 0600 "$D/$HOST/iked.conf" "$S/iked.conf"
    install -m 0644 "$D/$HOST/ipsec-policy.conf" "$S/ipsec-policy.conf"
    install -m 0644 "$D/$HOST/ipsec-profile.conf" "$S/ipsec-profile.conf"
    if [ -f "$D/$HOST/nss-passticket.key" ]; then
      install -m 0600 "$D/$HOST/nss-passticket.key" "$S/nss-passticket.key"
    fi
    K=$S/keyrings/iked/keyring
    mkdir -p -m 0700 "$S/keyrings" "$S/keyrings/iked" "$K"
    install -m 0600 "$D/$HOST/keyring.conf" "$K/keyring.conf"
    install -m 0600 "$D/pki/ca.pem" "$K/ca.pem"
    ;;
  *)
    echo "usage: $0 vault|vault2|moon|sun [ROOT]" >&2
    exit 2
    ;;
esac
