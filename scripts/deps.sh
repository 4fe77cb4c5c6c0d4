#!/bin/sh
# Installs the Debian packages metalearn builds against, when run as root and any is missing.
# As a normal user it only reports what is missing. Extra package names may be passed.
# Open MPI (libopenmpi-dev, openmpi-bin) is optional for the build (ML_MPI=AUTO) but installed so
# that the tests run multi-rank jobs; iproute2 makes the network-namespace test possible.
set -e
PKGS="build-essential cmake pkg-config libcjson-dev libzip-dev libspng-dev libjpeg-dev libinih-dev libopenblas-dev libopenmpi-dev openmpi-bin iproute2 $*"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "metalearn: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "metalearn: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
fi
