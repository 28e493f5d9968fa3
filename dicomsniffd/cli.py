"""Command line: `dicomsniffd [run]`, `dicomsniffd analyze`, `dicomsniffd check-config`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from dicomsniffd import __version__, accel

_SUBCOMMANDS = ("run", "analyze", "check-config")


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

    run = sub.add_parser("run", help="capture live and serve /metrics (the default)")
    run.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    run.add_argument("-i", "--interface", help="capture interface (default: any)")
    run.add_argument("-f", "--bpf", help="BPF capture filter")
    run.add_argument("--listen", help="metrics address HOST:PORT")
    run.add_argument("--workers", type=int, help="capture worker processes (PACKET_FANOUT)")

    analyze = sub.add_parser("analyze", help="analyse pcap/pcapng files offline")
    analyze.add_argument("captures", nargs="+", metavar="CAPTURE")
    analyze.add_argument("-c", "--config", help="YAML config file")
    analyze.add_argument("--metrics", metavar="FILE", help="write the Prometheus exposition")
    analyze.add_argument("--events", metavar="FILE", help="write the JSON-lines event log")
    analyze.add_argument("--report", metavar="FILE.html", help="write an HTML report")
    analyze.add_argument("--json", action="store_true", help="print a JSON summary")

    check = sub.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("file")
    return parser


def _fail(message: str) -> int:
    print(f"dicomsniffd: error: {message}", file=sys.stderr)
    return 2


def _load(path: str | None):
    from dicomsniffd.config import load_config

    return load_config(path)


def cmd_analyze(args: argparse.Namespace) -> int:
    from dicomsniffd import outputs
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.capture import CaptureError
    from dicomsniffd.config import ConfigError
    from dicomsniffd.sinks.metrics import MetricsStore
    from dicomsniffd.sinks.summary import Summary

    try:
        config = _load(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        output_on_stdout = outputs.check_analyze(args)
    except outputs.OutputError as exc:
        return _fail(str(exc))
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    sinks: list = [metrics, summary]
    event_log = None
    event_failures: list[OSError] = []
    try:
        if args.events is not None:
            event_log = _event_log(args.events, config.dicom.keep_instance_uids, event_failures)
            sinks.append(event_log)
        info = analyze_files(args.captures, config, sinks, labels=metrics)
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
        if args.report is not None:
            from dicomsniffd.sinks.report import write_report

            write_report(args.report, summary, info)
    except outputs.OutputError as exc:
        return _fail(str(exc))
    if args.json:
        json.dump(summary.to_dict(info), sys.stdout, indent=2, sort_keys=False, default=str)
        sys.stdout.write("\n")
    elif not output_on_stdout:  # else standard output carries that output alone
        sys.stdout.write(summary.render_text(info))
    if info.get("truncated_files"):
        # The complete packets were analysed and reported above; the cut is still an
        # error for scripts (as tshark and tcpdump -r exit non-zero on a cut file).
        sys.stdout.flush()
        cut = ", ".join(info["truncated_files"])
        return _fail(
            f"capture file truncated (cut short in the middle of a packet): {cut}; "
            "the results cover the complete packets before the cut"
        )
    return 0


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

    try:
        config = _load(args.file)
    except ConfigError as exc:
        return _fail(str(exc))
    sys.stdout.write(dump_config(config))
    return 0


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
        return cmd_run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of standard output (or of a FIFO) went away, e.g. `| head`: a quiet
        # exit, as before, with standard output muted so that no second error is printed.
        from dicomsniffd import outputs

        outputs.quiet_broken_pipe()
        return 0
