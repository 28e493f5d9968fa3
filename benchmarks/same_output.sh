#!/bin/bash
# Every output of `dicomsniffd analyze` for some captures, into one directory, so two trees
# can be compared byte for byte (speed work must not change behaviour):
#
#   benchmarks/same_output.sh TREE OUTDIR CAPTURE...
#   diff -r OUT_BEFORE OUT_AFTER        # prints nothing: the same behaviour
#
# Per capture, compiled and pure Python (DICOMSNIFFD_PURE_PYTHON=1): the text summary,
# --json, --metrics, --events and --report (its generation time normalised). Run it from
# a directory outside both trees: `python3 -m` puts the current directory first on
# sys.path, ahead of PYTHONPATH. The captures used in docs/performance.md: the scenario
# captures (`python3 tests/scenarios DIR`), make_many_flows.py --flows 2000, and a
# make_capture.py C-STORE capture.
set -u
TREE=$1; OUT=$2; shift 2
mkdir -p "$OUT"
for c in "$@"; do
  n=$(basename "$c" .pcap)
  for mode in py c; do
    if [ $mode = py ]; then pure=1; else pure=0; fi
    env DICOMSNIFFD_PURE_PYTHON=$pure PYTHONPATH="$TREE" python3 -m dicomsniffd analyze "$c" \
      --quiet --metrics "$OUT/$n.$mode.prom" --events "$OUT/$n.$mode.events" \
      --report "$OUT/$n.$mode.html" > "$OUT/$n.$mode.txt" 2>&1
    env DICOMSNIFFD_PURE_PYTHON=$pure PYTHONPATH="$TREE" python3 -m dicomsniffd analyze "$c" \
      --quiet --json > "$OUT/$n.$mode.json" 2>&1
    sed -i -E 's/(generated|Generated)[^<"]*[0-9]{4}-[0-9]{2}-[0-9]{2}[^<"]*/\1 NORMALISED/g' \
      "$OUT/$n.$mode.html"
  done
done
