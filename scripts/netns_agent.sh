#!/bin/sh
# Launch agent that makes Linux network namespaces look like hosts to OpenMPI's rsh launcher.
#
#   mpirun --mca plm_rsh_agent scripts/netns_agent.sh --hostfile HOSTS ...
#
# OpenMPI calls it like ssh: `netns_agent.sh HOST WORD...`, where the words together are one
# shell command line (the orted start-up, with its own quoting). The agent looks HOST up in
# MPT_NETNS_HOSTS, a space-separated list of HOST=NAMESPACE pairs taken from mpirun's environment,
# e.g. "10.99.0.1=mpt-h1 10.99.0.2=mpt-h2", and runs the command line with /bin/sh inside that
# network namespace (`ip netns exec`, root only) and in a UTS namespace of its own whose host name
# is the namespace's name, so each "host" has its own addresses and its own name. Like ssh, it
# stays in the foreground until the command ends and passes its exit status back; an unknown
# host ends with 255 (ssh's "could not connect").
#
# Used by tests/t_multihost.sh; anything else that builds namespaces can use it the same way.
host=$1
if [ -z "$host" ] || [ $# -lt 2 ]; then
  echo "usage: netns_agent.sh HOST COMMAND... (with MPT_NETNS_HOSTS=\"HOST=NETNS ...\")" >&2
  exit 255
fi
shift
ns=""
for pair in ${MPT_NETNS_HOSTS:-}; do
  case "$pair" in
    "$host="*) ns=${pair#*=} ;;
  esac
done
if [ -z "$ns" ]; then
  echo "netns_agent.sh: host '$host' is not in MPT_NETNS_HOSTS ('${MPT_NETNS_HOSTS:-}')" >&2
  exit 255
fi
# "$*" joins the words with spaces, exactly as ssh builds the remote command line.
exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$1" && exec /bin/sh -c "$2"' \
  netns_agent "$ns" "$*"
