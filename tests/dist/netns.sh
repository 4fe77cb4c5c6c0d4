#!/usr/bin/env bash
# Runs an MPI job of two ranks in two fresh network namespaces joined by a veth pair, so every
# byte between the ranks crosses a network interface over TCP (Open MPI's tcp BTL; shared memory
# is excluded). mpirun runs in the first namespace and starts the second rank's daemon with
# `ip netns exec` where it would use ssh. The link and its private 10.x addresses exist only
# inside the two namespaces, which are deleted on exit.
#   usage: netns.sh MPIRUN PROGRAM [ARGS...]   (environment: ML_NETNS_EXPORT = variables to pass)
# Exit 77 with a reason on stdout when namespaces cannot be made (not root, no iproute2, ...).
# Prints "netns: bytes over the veth: N" after the job.
set -u
MPIRUN=$1; shift
if [ "$(id -u)" != 0 ]; then echo "netns: skipped: needs root to create network namespaces"; exit 77; fi
if ! command -v ip >/dev/null 2>&1; then echo "netns: skipped: no 'ip' command (apt-get install iproute2)"; exit 77; fi
id=$$
A=mlA$id B=mlB$id NET=10.213.$((id % 250))
work=$(mktemp -d)
cleanup() {
  ip netns del "$A" 2>/dev/null
  ip netns del "$B" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
if ! err=$(ip netns add "$A" 2>&1); then echo "netns: skipped: ip netns add failed: $err"; exit 77; fi
ip netns add "$B" || exit 77
# the veth pair is created inside A with its peer moved straight into B: the host's own
# namespace never sees it
if ! err=$(ip -n "$A" link add vA type veth peer name vB netns "$B" 2>&1); then
  echo "netns: skipped: cannot create a veth pair: $err"; exit 77
fi
ip -n "$A" addr add "$NET.1/24" dev vA && ip -n "$B" addr add "$NET.2/24" dev vB || exit 77
ip -n "$A" link set lo up && ip -n "$B" link set lo up || exit 77
ip -n "$A" link set vA up && ip -n "$B" link set vB up || exit 77
# the launch agent mpirun uses instead of ssh: `agent HOST COMMAND...`
cat > "$work/agent" <<AGENT
#!/bin/sh
host=\$1; shift
case \$host in
  $NET.1) ns=$A ;;
  $NET.2) ns=$B ;;
  *) echo "netns agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec \$ns /bin/sh -c "\$*"
AGENT
chmod +x "$work/agent"
tx0=$(ip netns exec "$A" cat /sys/class/net/vA/statistics/tx_bytes)
rx0=$(ip netns exec "$A" cat /sys/class/net/vA/statistics/rx_bytes)
xargs="-x PATH"
for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS ${ML_NETNS_EXPORT:-}; do
  [ -n "${!v+set}" ] && xargs="$xargs -x $v"
done
ip netns exec "$A" timeout 120 "$MPIRUN" --allow-run-as-root -np 2 --host "$NET.1:1,$NET.2:1" \
  --mca plm_rsh_agent "$work/agent" --mca btl tcp,self --mca btl_tcp_if_include "$NET.0/24" \
  --mca oob_tcp_if_include "$NET.0/24" $xargs "$@"
rc=$?
tx1=$(ip netns exec "$A" cat /sys/class/net/vA/statistics/tx_bytes)
rx1=$(ip netns exec "$A" cat /sys/class/net/vA/statistics/rx_bytes)
echo "netns: bytes over the veth: $(( (tx1 - tx0) + (rx1 - rx0) ))"
exit $rc
