"""Do the two sides work together? The interoperability patterns a vendor conversation
starts from: one association per object, services that work next to services that fail,
an SCU that gives up for want of a context for its file's transfer syntax, TLS spoken to
a plain port (or the reverse), which side refused a TLS handshake, and a command set
sharing its P-DATA-TF with the data set on associations that failed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dicomsniffd.dicom.dimse import status_class
from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR, PresentationContext
from dicomsniffd.dicom.implementations import describe
from dicomsniffd.dicom.problems import ONE_DIRECTION_ONLY
from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import duration, plural
from dicomsniffd.names import context_result, status_hex, status_text, uid_display_name

if TYPE_CHECKING:
    from dicomsniffd.findings.facts import Association

VERIFICATION = "1.2.840.10008.1.1"
_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4  # A-ASSOCIATE-AC result (PS3.8 table 9-18)

# One association per object is only a pattern once it repeats, and only worth a line
# when it is most of what the pair does.
_MIN_SINGLE_STORE_ASSOCIATIONS = 5
_MIN_SINGLE_STORE_SHARE = 0.5

ONE_ASSOCIATION_PER_OBJECT = FindingKind(
    "one-association-per-object",
    "info",
    "One association per object",
    "Each object pays for a TCP handshake, A-ASSOCIATE negotiation and A-RELEASE. Configure "
    "the sending device (or its DICOM router/forwarder) to send a study or series on one "
    "association (with DCMTK: one storescu call for all files rather than one per file); "
    "it is a setting on most modalities and archives, often named 'send per study', "
    "'association per object' or 'keep association open'.",
)


@rule(ONE_ASSOCIATION_PER_OBJECT)
def one_association_per_object(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    # per AE pair: associations with C-STOREs, those with exactly one, and the time those
    # single-store associations spent outside their one operation (setup, release, idle)
    pairs: dict[tuple[str, str], list] = {}
    for a in c.associations:
        if not a.stores:
            continue
        row = pairs.setdefault((a.calling_ae, a.called_ae), [0, 0, 0.0, 0, 0.0, 0])
        row[0] += 1
        if a.stores == 1:
            row[1] += 1
            if a.duration is not None:
                row[2] += max(0.0, a.duration - a.busy_seconds)
                row[3] += 1
            if a.setup_seconds is not None:
                row[4] += a.setup_seconds
                row[5] += 1
    evidence = []
    total_single = 0
    for (calling, called), (with_stores, single, overhead, timed, setup, setups) in sorted(
        pairs.items(), key=lambda kv: -kv[1][1]
    ):
        if (
            single < _MIN_SINGLE_STORE_ASSOCIATIONS
            or single < _MIN_SINGLE_STORE_SHARE * with_stores
        ):
            continue
        total_single += single
        line = (
            f"{calling} → {called}: {single} of {plural(with_stores, 'association')} "
            f"({100.0 * single / with_stores:.0f} %) carried a single C-STORE"
        )
        if timed:
            per = overhead / timed
            line += (
                f"; each spent {duration(per)} outside its C-STORE (set-up, release, idle), "
                f"{duration(overhead)} in all"
            )
        if setups:
            line += f"; A-ASSOCIATE-RQ → AC {duration(setup / setups)} on average"
        evidence.append(line)
    if not evidence:
        return []
    detail = (
        f"{plural(total_single, 'association')} carried exactly one object each: every "
        "image was sent with its own A-ASSOCIATE-RQ … A-RELEASE-RP, so the time per "
        "object includes a whole association set-up and release."
    )
    return [ONE_ASSOCIATION_PER_OBJECT.found(detail, evidence, total_single)]


PARTIAL_SERVICE = FindingKind(
    "partial-service",
    "warning",
    "Some services work between these AEs, others fail",
    "The network, the AE titles and association set-up are fine (the services listed as "
    "working succeed on the same AE pair), so look at the SCP's configuration of the "
    "failing service for this calling AE: the SOP class (e.g. the Query/Retrieve model) "
    "not enabled or not allowed for this AE, a C-MOVE destination the SCP does not know "
    "(0xA801) or cannot reach, query/retrieve permissions. The SCP's log at these times "
    "says which.",
)

# Service of a refused SOP class, from its UID's name (the Query/Retrieve models'
# names end in FIND/MOVE/GET; storage classes in "Storage").
_SERVICE_WORDS = (("FIND", "C-FIND"), ("MOVE", "C-MOVE"), ("GET", "C-GET"), ("Storage", "C-STORE"))


def _service_of(abstract_syntax: str) -> str:
    name = uid_display_name(abstract_syntax) or abstract_syntax or "unknown SOP class"
    for word, service in _SERVICE_WORDS:
        if word in name:
            return service
    return "C-ECHO" if abstract_syntax == VERIFICATION else name


_UNANSWERED = {
    "unanswered-ended": "no response, the association ended with the request open",
    "unanswered-timeout": "no response within the transaction timeout",
}


def _is_success(status: str) -> bool:
    return status == "0x0000" or status.startswith("0xB")  # success or warning


def _refusals(contexts: Sequence[PresentationContext]) -> list[tuple[str, str]]:
    """(service, why) of each SOP class refused on every context that proposed it."""
    refused_pcs = [pc for pc in contexts if pc.result]  # not None, not acceptance
    if not refused_pcs:
        return []
    accepted = {pc.abstract_syntax for pc in contexts if pc.result == 0}
    refused = {
        (pc.abstract_syntax, pc.result) for pc in refused_pcs if pc.abstract_syntax not in accepted
    }
    out = []
    for uid, result in sorted(refused):
        name = uid_display_name(uid) or uid
        out.append((_service_of(uid), f"{name} refused ({context_result(result)})"))
    return out


@rule(PARTIAL_SERVICE)
def partial_service(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    ok: dict[tuple[str, str], dict[str, int]] = {}
    failed: dict[tuple[str, str], dict[str, dict[str, int]]] = {}

    def fail(pair: tuple[str, str], service: str, why: str, n: int = 1) -> None:
        reasons = failed.setdefault(pair, {}).setdefault(service, {})
        reasons[why] = reasons.get(why, 0) + n

    # the refusals of each negotiation, once: the core shares one contexts tuple among the
    # associations that negotiated the same (they stay alive here, so their ids are unique)
    refusals: dict[int, list[tuple[str, str]]] = {}
    for a in c.associations:
        pair = (a.calling_ae, a.called_ae)
        for command, statuses in a.dimse.items():
            n = 0
            for status, count in statuses.items():
                if _is_success(status):
                    n += count
            if n:
                done = ok.get(pair)
                if done is None:
                    done = ok[pair] = {}
                done[command] = done.get(command, 0) + n
        refused = refusals.get(id(a.contexts))
        if refused is None:
            refused = refusals[id(a.contexts)] = _refusals(a.contexts)
        for service, why in refused:
            fail(pair, service, why)
        if a.reject is not None:
            fail(pair, "association", f"A-ASSOCIATE-RJ {a.reject['reason']}")
    for (command, status, calling, called), n in c.failures.items():
        fail((calling, called), command, f"{status_hex(status)} {status_text(status)}".strip(), n)
    for (command, outcome, calling, called), n in c.unanswered_by.items():
        fail((calling, called), command, _UNANSWERED.get(outcome, outcome), n)

    evidence = []
    weight = 0
    for pair, services in sorted(failed.items()):
        working = ok.get(pair, {})
        broken = {s: why for s, why in services.items() if s not in working}
        if not working or not broken:
            continue
        weight += sum(sum(why.values()) for why in broken.values())
        works = ", ".join(f"{s} ({n})" for s, n in sorted(working.items()))
        fails = "; ".join(
            f"{service}: " + ", ".join(f"{why} ×{n}" for why, n in sorted(reasons.items()))
            for service, reasons in sorted(broken.items())
        )
        evidence.append(f"{pair[0]} → {pair[1]}: works: {works}; fails: {fails}")
    if not evidence:
        return []
    detail = (
        "On the same AE pair some services succeed while others are refused, fail or are "
        "never answered: the connection and the association work, the failing service "
        "does not."
    )
    return [PARTIAL_SERVICE.found(detail, evidence, weight)]


NO_CONTEXT_FOR_TRANSFER_SYNTAX = FindingKind(
    "no-context-for-transfer-syntax",
    "critical",
    "The SCU had no accepted context for its objects' transfer syntax",
    "The SCU holds the objects in a transfer syntax (often a compression) the SCP does not "
    "accept, and did not convert them to one the SCP accepted. Either enable that transfer "
    "syntax on the SCP, or configure the SCU to decompress/transcode before sending (with "
    "DCMTK storescu: propose the uncompressed syntaxes for a file it can decompress, or "
    "decompress it first with dcmdjpeg).",
)


def gave_up_for_transfer_syntax(a: Association) -> list[PresentationContext]:
    """The contexts refused for their transfer syntaxes on an association where the SCU
    then sent no request at all: empty unless that is what happened."""
    if not a.accepted or a.requests or a.end not in ("aborted", "released", "reset", "closed"):
        return []
    return [pc for pc in a.contexts if pc.result == _TRANSFER_SYNTAXES_NOT_SUPPORTED]


@rule(NO_CONTEXT_FOR_TRANSFER_SYNTAX)
def no_context_for_transfer_syntax(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    evidence = []
    for a in c.associations:
        refused = gave_up_for_transfer_syntax(a)
        if not refused:
            continue
        parts = []
        for pc in refused:
            sop = uid_display_name(pc.abstract_syntax) or pc.abstract_syntax or "unknown"
            syntaxes = ", ".join(uid_display_name(ts) or ts for ts in pc.transfer_syntaxes)
            accepted = sorted(
                {
                    uid_display_name(o.accepted_transfer_syntax) or o.accepted_transfer_syntax
                    for o in a.contexts
                    if o.result == 0 and o.abstract_syntax == pc.abstract_syntax
                }
            )
            also = f", accepted only as {', '.join(accepted)}" if accepted else ""
            parts.append(f"{sop} as {syntaxes} refused{also}")
        if a.abort is not None:
            who = "SCU" if a.abort["sender"] == REQUESTOR else "SCP"
            end = f"A-ABORT from the {who}"
        else:
            end = {"released": "A-RELEASE"}.get(a.end or "", a.end or "end")
        after = f" after {duration(a.duration)}" if a.duration is not None else ""
        evidence.append(
            f"flow {a.flow_id} {a.pair}: {'; '.join(parts)}; then no request, {end}{after}"
        )
    if not evidence:
        return []
    detail = (
        f"On {plural(len(evidence), 'association')} the SCP refused the presentation "
        "context proposed for a transfer syntax and the SCU then sent nothing and ended "
        "the association: the SCU had no accepted context for its objects' transfer "
        "syntax (it proposed that syntax on a context of its own, as it does for the "
        "syntax its files are in), and could not convert them to one that was accepted. "
        "The abort is the consequence, not the cause."
    )
    return [NO_CONTEXT_FOR_TRANSFER_SYNTAX.found(detail, evidence, len(evidence))]


TLS_TO_PLAIN_PORT = FindingKind(
    "tls-to-plain-port",
    "critical",
    "TLS client on a plain DICOM port",
    "The client starts TLS (its first bytes are a TLS ClientHello, 0x16 0x03) but the server "
    "speaks plain DICOM on this port: it reads the ClientHello as a PDU (DCMTK logs "
    "'Unrecognized PDU type: 16' or 'Incoming pdu was too large: length 17149697') and "
    "drops the connection. Turn TLS off in the client's configuration of this node, or "
    "point it at the server's TLS port (e.g. 2762), or enable TLS on the server.",
)
PLAIN_TO_TLS_PORT = FindingKind(
    "plain-to-tls-port",
    "critical",
    "Plain DICOM client on a TLS port",
    "The client sends a plain A-ASSOCIATE-RQ (0x01 0x00) to a port where the server expects "
    "TLS: the server's TLS stack rejects it ('wrong version number') and drops the "
    "connection, so the client only sees the association fail. Enable TLS for this node in "
    "the client's configuration (with the server's CA certificate and, if the server asks "
    "for one, a client certificate), or use the server's plain port.",
)
TLS_REFUSED = FindingKind(
    "tls-handshake-refused",
    "warning",
    "TLS handshakes refused",
    "The side that refused is the one to look at (its log names the reason).",
)
_TLS_REFUSED_ADVICE = {
    "client": "The client refused the server: usually it does not trust the server's "
    "certificate (its CA is not in the client's trust store, the certificate has expired, "
    "or its name does not match), or no protocol version/cipher suite is common.",
    "server": "The server refused the client: usually it requires a client certificate the "
    "client did not send, or does not trust the one it sent (its CA is missing from the "
    "server's trust store), or no protocol version/cipher suite is common.",
}
_PLAIN_PORT_REPLIES = ("reset-before-reply", "dicom-reply")
# the framer's detail for the first bytes of a TLS record read as a PDU (pdu.py)
_TLS_AS_PDU = ("PDU type 0x15", "PDU type 0x16")


def _plain_associations(c: Collected) -> dict[str, int]:
    """Server "ip:port" -> associations that got a plain DICOM answer (AC or RJ)."""
    out: dict[str, int] = {}
    for a in c.associations:
        if a.accepted or a.reject is not None:
            out[a.server] = out.get(a.server, 0) + 1
    return out


@rule(TLS_TO_PLAIN_PORT)
def tls_to_plain_port(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    plain = _plain_associations(c)
    evidence = []
    total = 0
    for (server, _outcome, how, _by), n in sorted(c.tls_handshakes.items()):
        if how not in _PLAIN_PORT_REPLIES:
            continue
        total += n
        answer = "a reset" if how == "reset-before-reply" else "a DICOM PDU"
        line = f"{server}: {plural(n, 'TLS ClientHello')} answered with {answer}, no TLS record"
        if plain.get(server):
            line += f"; the same port answered {plural(plain[server], 'plain association')}"
        evidence.append(line)
    if not evidence:
        return []
    detail = (
        f"{plural(total, 'TLS connection')} to DICOM ports got no TLS answer: the server "
        "answered the ClientHello with a reset or a DICOM PDU, as a plain DICOM port does."
    )
    return [TLS_TO_PLAIN_PORT.found(detail, evidence, total)]


def _acceptor_silent(error: tuple[str, str, str] | None) -> bool:
    """No bytes from the acceptor went wrong: none came ("nothing seen from the acceptor"
    is the one error then), or the first error was the requestor's."""
    return error is None or error[0] != ACCEPTOR or error[1] == ONE_DIRECTION_ONLY


@rule(PLAIN_TO_TLS_PORT)
def plain_to_tls_port(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    tls_servers: dict[str, int] = {}
    for (server, outcome, _how, _by), n in c.tls_handshakes.items():
        if outcome == "established":
            tls_servers[server] = tls_servers.get(server, 0) + n
    evidence = []
    for a in c.associations:
        if not a.requested or a.accepted or a.reject is not None or a.abort is not None:
            continue
        error = a.first_error
        if error is not None and error[0] == ACCEPTOR and error[2] in _TLS_AS_PDU:
            answer = f"a TLS record ({error[2].replace('PDU type ', 'first byte ')})"
        elif _acceptor_silent(error) and a.end == "reset" and a.server in tls_servers:
            answer = (
                "a reset, no PDU; the same port completed "
                f"{plural(tls_servers[a.server], 'TLS handshake')}"
            )
        else:
            continue
        evidence.append(
            f"flow {a.flow_id} {a.pair} to {a.server}: A-ASSOCIATE-RQ answered with {answer}"
        )
    if not evidence:
        return []
    detail = (
        f"{plural(len(evidence), 'plain A-ASSOCIATE-RQ')} went to a port that speaks TLS: "
        "the server answered in TLS or dropped the connection, never with a PDU."
    )
    return [PLAIN_TO_TLS_PORT.found(detail, evidence, len(evidence))]


@rule(TLS_REFUSED)
def tls_refused(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    groups: dict[tuple[str, str, str], int] = {}
    for (server, outcome, how, by), n in c.tls_handshakes.items():
        if outcome == "handshake-failed" and how in ("alert", "reset") and by:
            key = (server, by, how)
            groups[key] = groups.get(key, 0) + n
    if not groups:
        return []
    evidence = [
        f"{server}: {plural(n, 'handshake')} refused by the {by} "
        f"({'its TLS alert' if how == 'alert' else 'it reset the connection'})"
        for (server, by, how), n in sorted(groups.items())
    ]
    sides = sorted({by for _server, by, _how in groups})
    advice = " ".join(_TLS_REFUSED_ADVICE[by] for by in sides if by in _TLS_REFUSED_ADVICE)
    total = sum(groups.values())
    detail = (
        f"{plural(total, 'TLS handshake')} on DICOM ports ended before DICOM could start, "
        f"refused by the {' and the '.join(sides)}."
    )
    return [TLS_REFUSED.found(detail, evidence, total, advice=advice or None)]


COMMAND_WITH_DATASET = FindingKind(
    "command-with-dataset-in-one-pdu",
    "info",
    "Command set and data set in one P-DATA-TF",
    "Legal (PS3.8 E.1 lets one P-DATA-TF carry the last command fragment and the first "
    "data set fragment), but a known source of trouble between implementations (reported "
    "between fo-dicom and DCMTK): when an association with this pattern fails, ask the "
    "receiver's vendor whether it handles a data set PDV in the command's PDU, and try the "
    "sender's option to send the data set in its own P-DATA-TF if it has one.",
)


def _in_trouble(a: Association) -> bool:
    """Ended by abort/reset, unanswered requests, protocol errors or a failure status."""
    if a.cut_short or a.unanswered or a.protocol_errors:
        return True
    return any(
        status and status_class(None, int(status, 16)) == "failure"
        for statuses in a.dimse.values()
        for status in statuses
        if not status.startswith("0xFF")  # pending, whatever the service
    )


@rule(COMMAND_WITH_DATASET)
def command_with_dataset(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    # Only next to trouble: DCMTK's storescu packs every C-STORE this way, so on healthy
    # traffic it is noise; on an association that failed it is a lead for the vendor.
    # (calling, called, sender, software) -> [associations in trouble, messages]
    rows: dict[tuple[str, str, str, str], list[int]] = {}
    for a in c.associations:
        if not a.command_with_dataset or not _in_trouble(a):
            continue
        for sender, messages in a.command_with_dataset:
            ui = a.requestor_info if sender == REQUESTOR else a.acceptor_info
            software = describe(
                ui.implementation_class_uid if ui else "",
                ui.implementation_version_name if ui else "",
            )
            row = rows.setdefault((a.calling_ae, a.called_ae, sender, software), [0, 0])
            row[0] += 1
            row[1] += messages
    if not rows:
        return []
    evidence = []
    for (calling, called, sender, software), (assocs, messages) in sorted(rows.items()):
        who = "SCU (requestor)" if sender == REQUESTOR else "SCP (acceptor)"
        evidence.append(
            f"{calling} → {called}: the {who}, {software}, sent {plural(messages, 'message')} "
            f"with command and data set in one P-DATA-TF on {plural(assocs, 'association')} "
            "that ended in trouble (abort, reset, failure status, unanswered request or "
            "protocol error)"
        )
    total = sum(assocs for assocs, _ in rows.values())
    detail = (
        f"On {plural(total, 'association')} that failed, the command set and the data set "
        "of a message started in the same P-DATA-TF: legal, but worth naming to the vendor."
    )
    return [COMMAND_WITH_DATASET.found(detail, evidence, total)]
