"""atheris (libFuzzer) harness over the whole offline pipeline.

    python3 fuzz/make_corpus.py /tmp/corpus --real          # seeds (real captures: root)
    python3 fuzz/fuzz_pipeline.py /tmp/corpus -max_total_time=3600 -rss_limit_mb=2048

Any libFuzzer flag works (-runs=N, -jobs=N, -max_len=...). See fuzz/README.md and
fuzz/harness.py for the input format and the invariants that count as a crash.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

with atheris.instrument_imports(include=["dicomsniffd"]):
    import dicomsniffd.decode  # noqa: F401
    import dicomsniffd.dicom.conversation  # noqa: F401
    import dicomsniffd.flows  # noqa: F401
    import dicomsniffd.pipeline  # noqa: F401
    import dicomsniffd.sinks.eventlog  # noqa: F401
    import dicomsniffd.sinks.metrics  # noqa: F401
    import dicomsniffd.sinks.summary  # noqa: F401

import harness  # noqa: E402

CONFIG = harness.fuzz_config()
# dicomsniffd_build_info reads package metadata (~5 ms, 2/3 of an execution here):
# sinks/metrics/build_info.py looks it up once per process, so every input reuses it.

# DSNIFF_FUZZ_DIFFERENTIAL=1: every input also through pure Python, outputs must match
# the compiled hot path's (dicomsniffd/_fastpath.c) exactly.
DIFFERENTIAL = os.environ.get("DSNIFF_FUZZ_DIFFERENTIAL", "") not in ("", "0")


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    harness.run_input(data, CONFIG, differential=DIFFERENTIAL)


def main() -> None:
    # flows.py logs the first contained handler error at ERROR: the harness raises on it
    # anyway, keep the fuzzer's output clean.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")  # pydicom warns about fuzzed UIDs it is asked to name
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
