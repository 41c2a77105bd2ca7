# libreswan in a VM scenario, from the tree `cargo xtask setup` unpacked into
# the host's cache (Debian's package conflicts with strongswan-starter, so it
# is not installed). Run by a step: `sh $SCENARIO_DIR/libreswan.sh CMD ARGS`
# (other scenarios run it from this directory):
#
#   pluto          run pluto in the foreground, logging to stderr, with a fresh
#                  NSS database in /var/lib/ipsec/nss, /etc/ipsec.conf's
#                  `config setup`, /etc/ipsec.secrets, rundir /run/pluto (the
#                  host's own /etc, /var and /run); for a `daemon` step
#   ipsec ARGS     the package's `ipsec` command (auto, whack, status, …)
#
# The tree: $LIBRESWAN if set, else <cache>/libreswan seen through the guest's
# read-only share of the host's / (/gatekey/host). The cache directory is read
# from the runner's bind mount of the guest kernel's modules
# (<cache>/kernel/PKG/lib/modules/RELEASE), so GATEKEY_CACHE is honoured.
#
# pluto 4.10 runs /usr/libexec/ipsec/addconn at start-up and the package's
# _updown names /usr/libexec/ipsec too; no option moves them. So the command
# runs in a mount namespace of its own (each step has one) where the tree's
# usr/libexec is overlaid on the guest's read-only /usr/libexec: nothing is
# installed, and no other process sees it.

if [ -z "${LIBRESWAN:-}" ]; then
  lsw_cache=$(awk '$5 ~ /^\/gatekey\/modroot\/lib\/modules\// {
      sub(/\/kernel\/[^\/]*\/lib\/modules\/.*$/, "", $4); print $4; exit }' /proc/self/mountinfo)
  LIBRESWAN=/gatekey/host${lsw_cache:-/root/.cache/gatekey}/libreswan
fi
if [ ! -x "$LIBRESWAN/usr/libexec/ipsec/pluto" ]; then
  echo "libreswan.sh: no $LIBRESWAN/usr/libexec/ipsec/pluto: run \`cargo xtask setup\` on the host" >&2
  exit 1
fi
if [ ! -x /usr/libexec/ipsec/pluto ]; then
  mount -t overlay -o "lowerdir=$LIBRESWAN/usr/libexec:/usr/libexec" libreswan /usr/libexec
fi
IPSEC_EXECDIR=/usr/libexec/ipsec
IPSEC_SBINDIR=$LIBRESWAN/usr/sbin
PATH=$IPSEC_SBINDIR:$PATH
export LIBRESWAN IPSEC_EXECDIR IPSEC_SBINDIR PATH
lsw_cmd=$1
shift
case $lsw_cmd in
  pluto)
    mkdir -p /run/pluto /var/lib/ipsec/nss
    certutil -N -d sql:/var/lib/ipsec/nss --empty-password
    exec "$IPSEC_EXECDIR/pluto" --nofork --stderrlog --config /etc/ipsec.conf \
      --rundir /run/pluto --nssdir /var/lib/ipsec/nss --secretsfile /etc/ipsec.secrets "$@"
    ;;
  ipsec)
    exec "$IPSEC_SBINDIR/ipsec" "$@"
    ;;
  *)
    echo "libreswan.sh: unknown command \`$lsw_cmd\` (pluto or ipsec)" >&2
    exit 2
    ;;
esac
