#!/bin/sh
# Sums the "N passed, N failed" lines that every test program prints, from ctest's log.
log="$1/Testing/Temporary/LastTest.log"
[ -f "$log" ] || exit 0
awk '/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; n++ }
     END { if (n) printf "(%d test programs)\ncases: %d passed, %d failed\n", n, p, f }' "$log"
