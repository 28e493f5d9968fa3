"""Real-traffic scenarios: real DICOM peers over real TCP between two namespaces, captured.

Each scenario drives the peers (DCMTK, pynetdicom, a raw-socket SCU) inside a fresh
``netns.VethPair`` while tcpdump captures on a veth, and returns a ``Scenario``: the pcap
path and an ``expected`` dict whose numbers come from how the scenario drove the peers
(what the SCP was told to answer, how many files were sent), never from our analyser.

Conventions (the integrator needs these):
- the SCP side is namespace "b" (x.x.x.2 / fd00::2), the SCU side namespace "a" (.1 / ::1);
- every SCP listens on port 11112 (SCP_PORT); the C-MOVE destination storescp in
  namespace "a" on 11113 (DEST_PORT);
- AE titles are given explicitly to every peer (see each scenario's ``expected``);
- images are synthetic (peers/make_ct.py): CT Image Storage, Explicit VR LE, TEST^PATIENT.

``expected`` keys (all optional, a test only checks the keys a scenario sets):
  association_requests   int: A-ASSOCIATE-RQ on the wire
  associations           [{calling_ae, called_ae, outcome, end}] (outcome accepted/rejected;
                         end released/aborted/... as in dicom_association_ends_total{how})
  ends                   {how: n}
  requests               {command: n}                   dicom_dimse_requests_total
  responses              {command: {status: n}}         dicom_dimse_responses_total
  responses_any_of       {command: {status: [n, ...]}}   when the cut makes it ambiguous
  unanswered             {command: n}
  rejects                [{result, source, reason}]
  aborts                 [{source}]
  presentation_contexts  [{abstract_syntax, transfer_syntax, result}]
  suboperations          {command: {outcome: n}}
  response_latency_ms    {command: [low, high]}   bounds on every measured latency
  latency_agreement_ms   max |analyser p50 - tshark median|
  command_aes            {command: [calling, called]} when not the first association's
  status_classes         {status: status_class}
  presentation_contexts_accepted   [{abstract_syntax}]: accepted with a transfer syntax
  user_identity          {type, username, passcode} carried in the A-ASSOCIATE-RQ
  min_retransmissions    {sender: n}
  findings_present / findings_absent   [code, ...]
  secrets                strings that must never appear in any analyser output
  ip_version, vlan_id, max_frame_len


The package, by what the scenarios exercise: ``plumbing`` (what every scenario is built
from), ``exchanges`` (a-i), ``network`` (j-m), ``core`` (registry and generator of a-m),
``more`` (n-r), ``tshark`` (the second opinion). Test modules use it as one namespace
(``scenarios.X``), as when it was one file: every name is re-exported here.
"""

from __future__ import annotations

import netns  # noqa: F401  (scenarios.netns, as when this was one module)
from netns import VethPair  # noqa: F401
from peers import make_ct  # noqa: F401  (fuzz/accuracy.py uses scenarios.make_ct)

from .core import ALL_NAMES, SCENARIOS, generate_all
from .exchanges import (
    F_STATUSES,
    G_DELAY_MS,
    H_PENDING,
    I_SUBOPS,
    PASSCODE,
    USER,
    sc_a_store50,
    sc_b_echo3,
    sc_c_context_rejected,
    sc_d_assoc_rejected,
    sc_e_abort_mid_dataset,
    sc_f_statuses,
    sc_g_slow_scp,
    sc_h_find20,
    sc_i_move5,
)
from .more import (
    ANYPORT,
    MORE_SCENARIOS,
    SNAPLEN,
    TLS_STORES,
    _ip4,
    generate_more,
    make_tls_material,
    sc_n_tls,
    sc_o_anyport,
    sc_p_conn_failures,
    sc_q_any_iface,
    sc_r_snaplen,
)
from .network import (
    J_DROP,
    L_VLAN,
    M_SEEN_BEFORE_CUT,
    sc_j_loss,
    sc_k_ipv6,
    sc_l_vlan,
    sc_m_midstream,
)
from .plumbing import (
    DEST_PORT,
    PEERS,
    PY,
    RAWSCU_SCRIPT,
    SCP_PORT,
    SCP_SCRIPT,
    STATUS_CLASS,
    Images,
    Scenario,
    _check,
    _dcmtk_cache,
    _start_tcpdump,
    _stop_capture,
    _store_expect,
    _storescu,
    cleanup,
    dcmtk,
    hexstatus,
    make_images,
    read_scp_log,
    require_all_tools,
    run_timed,
    start_pyscp,
    start_storescp,
    status_class,
    stop,
)
from .tshark import (
    COMMAND_FIELDS,
    TsharkView,
    _decode_as,
    _dicom_proto,
    _elements,
    _tshark,
    _us,
    median,
    tcp_response_latencies_ms,
    tshark_view,
)

__all__ = [
    "netns",
    "VethPair",
    "make_ct",
    "SCP_PORT",
    "DEST_PORT",
    "PY",
    "PEERS",
    "SCP_SCRIPT",
    "RAWSCU_SCRIPT",
    "STATUS_CLASS",
    "status_class",
    "hexstatus",
    "_dcmtk_cache",
    "dcmtk",
    "require_all_tools",
    "Scenario",
    "Images",
    "make_images",
    "_check",
    "start_storescp",
    "start_pyscp",
    "read_scp_log",
    "stop",
    "_store_expect",
    "sc_a_store50",
    "sc_b_echo3",
    "sc_c_context_rejected",
    "sc_d_assoc_rejected",
    "USER",
    "PASSCODE",
    "sc_e_abort_mid_dataset",
    "F_STATUSES",
    "sc_f_statuses",
    "G_DELAY_MS",
    "sc_g_slow_scp",
    "H_PENDING",
    "sc_h_find20",
    "I_SUBOPS",
    "sc_i_move5",
    "J_DROP",
    "sc_j_loss",
    "sc_k_ipv6",
    "L_VLAN",
    "_storescu",
    "sc_l_vlan",
    "M_SEEN_BEFORE_CUT",
    "sc_m_midstream",
    "SCENARIOS",
    "ALL_NAMES",
    "generate_all",
    "COMMAND_FIELDS",
    "TsharkView",
    "_tshark",
    "_decode_as",
    "_elements",
    "_us",
    "tshark_view",
    "_dicom_proto",
    "tcp_response_latencies_ms",
    "median",
    "run_timed",
    "cleanup",
    "ANYPORT",
    "SNAPLEN",
    "TLS_STORES",
    "_start_tcpdump",
    "_stop_capture",
    "make_tls_material",
    "sc_n_tls",
    "sc_o_anyport",
    "sc_p_conn_failures",
    "_ip4",
    "sc_q_any_iface",
    "sc_r_snaplen",
    "MORE_SCENARIOS",
    "generate_more",
]
