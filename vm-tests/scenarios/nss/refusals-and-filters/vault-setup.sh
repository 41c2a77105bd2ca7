#!/bin/sh
# vault for nss/refusals-and-filters: the demo's NSS server files, plus a
# local operator OPER (Unix user oper, group netops) permitted to display the
# gateways through NSS but not to control them.
set -e
sh "$WORKSPACE/examples/demo/install.sh" vault
echo 'netops:x:1001:' >>/etc/group
echo 'oper:x:1001:1001:NSS operator:/tmp:/bin/sh' >>/etc/passwd
S=/etc/security/nssd.saf
sed -i 's/^Profile EZB\.NETMGMT\.VAULT\.\*\.IPSEC\.DISPLAY .*/Profile EZB.NETMGMT.VAULT.*.IPSEC.DISPLAY   { Permit NSSADMIN  Permit OPER }/' "$S"
echo 'User OPER { Revoke }                            # a Unix user of this host; no NSS login' >>"$S"
grep -q 'Permit NSSADMIN  Permit OPER' "$S"
