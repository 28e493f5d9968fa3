"""Command line: `dicomsniffd [run]`, `dicomsniffd analyze`, `dicomsniffd check-config`,
`dicomsniffd compare`, `dicomsniffd correlate`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dicomsniffd import __version__, accel

_SUBCOMMANDS = ("run", "analyze", "check-config", "compare", "correlate")


_RUN_DESCRIPTION = """\
Capture DICOM traffic live on a mirror port and serve Prometheus metrics on
/metrics (and /healthz). Flags override the config file. SIGHUP reloads the
config; SIGTERM/SIGINT stop cleanly. `dicomsniffd` alone is `dicomsniffd run`.
"""

_ANALYZE_DESCRIPTION = """\
Analyse pcap/pcapng capture files offline: a troubleshooting summary (findings
first) on stdout, optionally the Prometheus exposition, the JSON-lines event log
and an HTML report. Several files are read as one capture.
"""

_CHECK_DESCRIPTION = """\
Validate a config file as `run` does at start-up: every key and value, the BPF
filter (compiled for the link types of the configured interface) and the metrics
TLS files (they must exist, be readable and load). Prints the effective config
(YAML) on stdout, then an OK line on stderr. What needs the live interface
(opening it with the capture privileges, binding the metrics port) only `run`
can check.
"""

_RUN_EPILOG = """\
examples:
  dicomsniffd run -c /etc/dicomsniffd/dicomsniffd.yaml
  dicomsniffd run -i ens4 -f 'tcp port 104' --listen 127.0.0.1:9104 --workers 2

exit codes:
  0  clean stop (SIGTERM/SIGINT)
  1  anything else: interface missing or down, metrics port busy, a worker died
  2  configuration error (bad YAML/key/value, BPF filter, TLS files): a restart won't help
"""

_ANALYZE_EPILOG = """\
examples:
  dicomsniffd analyze capture.pcapng
  dicomsniffd analyze a.pcap b.pcap --json --metrics m.prom --report r.html

exit codes:
  0  analysed
  2  bad config, a capture file that cannot be read, an output that cannot be written,
     or a truncated capture (the complete packets before the cut are still reported)
"""

_CHECK_EPILOG = """\
examples:
  dicomsniffd check-config new.yaml > effective.yaml
  dicomsniffd check-config /etc/dicomsniffd/dicomsniffd.yaml && systemctl reload dicomsniffd

exit codes:
  0  OK: `run` would accept this config (up to what needs the live interface)
  2  invalid: one line on stderr names the file, the key and what is wrong
"""

_CORRELATE_DESCRIPTION = """\
Compare two captures of the same traffic taken at two points (both ends of a
link, both sides of a firewall or NAT). The same TCP connections are matched by
their data (ISN, first payload), not their addresses, so NAT between the points
works. For each: segments lost between the points (per direction), the delay
added (with the clock offset between the captures estimated and stated), TCP
options or payloads changed (MSS clamped, window scaling or SACK stripped),
resets that the other side never sent (injected by a middlebox), and which
association and DIMSE message each one hit. NEAR is the capture nearer the
clients (the association requestors); if it is not, correlate says so.
"""

_CORRELATE_EPILOG = """\
examples:
  dicomsniffd correlate modality-side.pcap pacs-side.pcap
  dicomsniffd correlate near.pcapng far.pcapng --json --report between.html

exit codes:
  0  compared (whatever was found between the points)
  2  a capture that cannot be read, an output that cannot be written, a capture
     without TCP, or no connection in common (not captures of the same traffic);
     or a truncated capture (compared up to the cut, reported, then exit 2)
"""


_COMPARE_DESCRIPTION = """\
Compare two runs of the same transactions ("before" and "after" a change): per AE
pair and DIMSE command the statuses, each timing phase's p50/p95, throughput, TCP
health (retransmissions, zero windows, resets) and the findings gone / still there /
new, with a verdict per pair and overall: fixed, still-failing, regressed, improved,
unchanged or not-comparable. Each side is a capture file, a directory of capture
files, or a saved `analyze --json`; several captures on a side are read as one
capture: name them after --before and --after. The rule deciding regressions is
printed with every result (README: "Compare before and after").
"""

_COMPARE_EPILOG = """\
examples:
  dicomsniffd compare monday.pcap tuesday.pcap
  dicomsniffd compare --before a1.pcap a2.pcap --after fixed/ --json
  dicomsniffd compare saved-before.json after.pcapng --report compare.html

exit codes:
  0  compared: fixed, improved or unchanged
  1  compared: regressed or still-failing
  2  bad input (a file that cannot be read, an empty side, a JSON that is not an
     analyze --json, an output that cannot be written; nothing is written then), or
     no AE pair on both sides (not-comparable), or a capture cut short (as analyze:
     then the comparison of the packets before the cut is still printed)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomsniffd",
        description="Passive DICOM network monitor: Prometheus metrics from a mirror port, "
        "and troubleshooting summaries of capture files.",
    )
    parser.add_argument(
        "--version", action="version", version=f"dicomsniffd {__version__} ({accel.describe()})"
    )
    sub = parser.add_subparsers(dest="command")

    run = _subcommand(
        sub, "run", "capture live and serve /metrics (the default)", _RUN_DESCRIPTION, _RUN_EPILOG
    )
    run.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    run.add_argument("-i", "--interface", help="capture interface (default: any)")
    run.add_argument("-f", "--bpf", help="BPF capture filter")
    run.add_argument("--listen", help="metrics address HOST:PORT")
    run.add_argument("--workers", type=int, help="capture worker processes (PACKET_FANOUT)")

    analyze = _subcommand(
        sub, "analyze", "analyse pcap/pcapng files offline", _ANALYZE_DESCRIPTION, _ANALYZE_EPILOG
    )
    analyze.add_argument("captures", nargs="+", metavar="CAPTURE")
    analyze.add_argument("-c", "--config", help="YAML config file")
    analyze.add_argument("--metrics", metavar="FILE", help="write the Prometheus exposition")
    analyze.add_argument("--events", metavar="FILE", help="write the JSON-lines event log")
    analyze.add_argument("--report", metavar="FILE.html", help="write an HTML report")
    analyze.add_argument("--json", action="store_true", help="print a JSON summary")
    analyze.add_argument(
        "--quiet", action="store_true", help="no progress bar on a terminal's stderr"
    )
    _evidence_options(analyze)

    check = _subcommand(
        sub,
        "check-config",
        "validate a config file and print it",
        _CHECK_DESCRIPTION,
        _CHECK_EPILOG,
    )
    check.add_argument("file", metavar="FILE", help="the YAML config file to check")
    _compare_arguments(
        _subcommand(
            sub,
            "compare",
            "compare two runs: fixed, regressed, unchanged…",
            _COMPARE_DESCRIPTION,
            _COMPARE_EPILOG,
        )
    )

    correlate = _subcommand(
        sub,
        "correlate",
        "compare two capture points of the same traffic",
        _CORRELATE_DESCRIPTION,
        _CORRELATE_EPILOG,
    )
    correlate.add_argument("near", metavar="NEAR", help="capture nearer the clients")
    correlate.add_argument("far", metavar="FAR", help="capture nearer the servers")
    correlate.add_argument("-c", "--config", help="YAML config file (for the DICOM decoding)")
    correlate.add_argument("--report", metavar="FILE.html", help="write an HTML report")
    correlate.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _compare_arguments(compare: argparse.ArgumentParser) -> None:
    compare.add_argument(
        "sides", nargs="*", metavar="BEFORE AFTER", help="one capture, directory or JSON each"
    )
    compare.add_argument("--before", nargs="+", metavar="FILE", help="the before side's files")
    compare.add_argument("--after", nargs="+", metavar="FILE", help="the after side's files")
    compare.add_argument("-c", "--config", help="YAML config file (to read captures)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.add_argument("--report", metavar="FILE.html", help="write an HTML report")


def _evidence_options(analyze: argparse.ArgumentParser) -> None:
    """analyze --evidence: PHI-scrubbed pcaps for the vendor (README "Evidence for the
    vendor")."""
    analyze.add_argument(
        "--evidence",
        metavar="DIR",
        help="write one PHI-scrubbed pcap per association with a problem, and a README",
    )
    analyze.add_argument(
        "--evidence-all", action="store_true", help="with --evidence: every association"
    )
    analyze.add_argument(
        "--evidence-association",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="with --evidence: the association numbered N (the summary's flow column); repeatable",
    )


def _subcommand(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """One subcommand with its description, examples and exit codes kept as written."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _fail(message: str) -> int:
    print(f"dicomsniffd: error: {message}", file=sys.stderr)
    return 2


def _load(path: str | None):
    from dicomsniffd.config import load_config

    return load_config(path)


def cmd_analyze(args: argparse.Namespace) -> int:
    from dicomsniffd import outputs, progress
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.capture import CaptureError
    from dicomsniffd.config import ConfigError
    from dicomsniffd.formatting import format_break
    from dicomsniffd.sinks.metrics import MetricsStore
    from dicomsniffd.sinks.summary import Summary

    try:
        config = _load(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        output_on_stdout = outputs.check_analyze(args)
        _check_evidence(args)
    except outputs.OutputError as exc:
        return _fail(str(exc))
    metrics = MetricsStore(config.metrics)
    # The per-transaction log feeds only the HTML report (~300 bytecodes a transaction).
    summary = Summary(transaction_log=args.report is not None)
    sinks: list = [metrics, summary]
    event_log = None
    event_failures: list[OSError] = []
    try:
        if args.events is not None:
            event_log = _event_log(args.events, config.dicom.keep_instance_uids, event_failures)
            sinks.append(event_log)
        with progress.bar(args.captures, summary.association_count, quiet=args.quiet) as bar:
            info = analyze_files(args.captures, config, sinks, labels=metrics, progress=bar)
    except (CaptureError, outputs.OutputError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    finally:
        if event_log is not None:
            event_log.close()
    if event_failures:
        if isinstance(event_failures[0], BrokenPipeError):
            raise event_failures[0]  # the reader went away: main() exits quietly
        return _fail(str(outputs.error(args.events, event_failures[0])))
    pipeline = info.pop("_pipeline")
    metrics.set_self_stats_source(pipeline.self_stats)
    try:
        if args.metrics is not None:
            outputs.write(args.metrics, metrics.exposition())
        # first: the summary and the report list the evidence files written
        evidence_note = _write_evidence(args, summary, info)
        if args.report is not None:
            from dicomsniffd.sinks.report import write_report

            write_report(args.report, summary, info)
    except outputs.OutputError as exc:
        return _fail(str(exc))
    if args.json:
        outputs.write_json(sys.stdout, summary.to_dict(info))
    elif not output_on_stdout:  # else standard output carries that output alone
        sys.stdout.write(summary.render_text(info))
    sys.stdout.flush()
    if evidence_note:
        print(f"dicomsniffd: {evidence_note}", file=sys.stderr)
    if info.get("files_reordered"):
        order = " ".join(info["files"])
        print(f"dicomsniffd: note: files read in time order: {order}", file=sys.stderr)
    if info.get("broken_files"):
        # The complete packets were analysed and reported above; the break is still an
        # error for scripts (as tshark and tcpdump -r exit non-zero on a cut file).
        kinds = {b["kind"] for b in info["broken_files"]}
        what = "truncated" if kinds == {"truncated"} else "broken"
        where = "; ".join(format_break(b) for b in info["broken_files"])
        return _fail(
            f"capture file {what}: {where}; the results cover the packets before the break"
        )
    return 0


def _check_evidence(args: argparse.Namespace) -> None:
    """Before reading anything: the evidence directory is usable (OutputError if not)."""
    from dicomsniffd import outputs

    if args.evidence is None:
        if args.evidence_all or args.evidence_association:
            raise outputs.OutputError("--evidence-all/--evidence-association need --evidence DIR")
        return
    from dicomsniffd.evidence.folder import EvidenceError, prepare

    try:
        prepare(args.evidence)
    except EvidenceError as exc:
        raise outputs.OutputError(str(exc)) from None


def _write_evidence(args: argparse.Namespace, summary, info: dict) -> str | None:
    """analyze --evidence: the scrubbed pcaps; the note to print (OutputError on failure).
    What was written goes into ``info["evidence"]`` (the summary's ``capture.evidence``)."""
    if args.evidence is None:
        return None
    from dicomsniffd import outputs
    from dicomsniffd.evidence.folder import EvidenceError
    from dicomsniffd.evidence.offline import for_analyze

    try:
        note, info["evidence"] = for_analyze(
            args.evidence,
            summary.to_dict(info),
            info["files"],
            every=args.evidence_all,
            numbers=args.evidence_association,
        )
        return note
    except EvidenceError as exc:
        raise outputs.OutputError(str(exc)) from None


def _event_log(path: str, keep_instance_uids: bool, failures: list[OSError]):
    """The --events sink (``-``: standard output); its write errors go to ``failures``
    (the run fails on the first once the capture is read)."""
    from dicomsniffd import outputs
    from dicomsniffd.sinks.eventlog import EventLog

    try:
        target = sys.stdout if path == outputs.STDOUT else path
        return EventLog(
            target, keep_instance_uids=keep_instance_uids, on_write_error=failures.append
        )
    except OSError as exc:
        raise outputs.error(path, exc) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from dicomsniffd.config import ConfigError, dump_config
    from dicomsniffd.daemon.errors import StartupError
    from dicomsniffd.daemon.preflight import check_startable, run_user_note

    try:
        config = _load(args.file)
        checked = check_startable(config)
    except ConfigError as exc:
        return _fail(str(exc))
    except StartupError as exc:
        return _fail(f"{args.file}: {exc}")
    sys.stdout.write(dump_config(config))
    sys.stdout.flush()
    note = run_user_note(config)
    if note:
        print(f"dicomsniffd: note: {note}", file=sys.stderr)
    print(
        "dicomsniffd: not checked (needs the live interface; `run` checks it at start): "
        f"capture.interface {config.capture.interface!r} opens with the capture privileges, "
        "its link type (a named interface is taken as Ethernet), metrics.listen"
        f" {config.metrics.listen} can be bound",
        file=sys.stderr,
    )
    print(f"OK: {args.file}: valid; " + "; ".join(checked), file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dicomsniffd import outputs
    from dicomsniffd.compare.main import run_compare

    try:
        return run_compare(args, _load, print_error=_fail)
    except outputs.OutputError as exc:
        return _fail(str(exc))


def cmd_correlate(args: argparse.Namespace) -> int:
    from dicomsniffd.correlate.command import correlate_command

    return correlate_command(args, _load, _fail)


def cmd_run(args: argparse.Namespace) -> int:
    from dicomsniffd.daemon import main as daemon_main

    return daemon_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in _SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    try:
        if args.command == "analyze":
            return cmd_analyze(args)
        if args.command == "check-config":
            return cmd_check_config(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "correlate":
            return cmd_correlate(args)
        return cmd_run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of standard output (or of a FIFO) went away, e.g. `| head`: a quiet
        # exit, as before, with standard output muted so that no second error is printed.
        from dicomsniffd import outputs

        outputs.quiet_broken_pipe()
        return 0
