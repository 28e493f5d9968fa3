"""The registry of the core scenarios (a)-(m) and their generator, used by the session
fixture ``real_traffic`` (tests/test_real_traffic.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .exchanges import (
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
from .network import sc_j_loss, sc_k_ipv6, sc_l_vlan, sc_m_midstream
from .plumbing import Images, Scenario, make_images, require_all_tools, run_timed

SCENARIOS: dict[str, Callable[[str, Images], Scenario]] = {
    "a_store50": sc_a_store50,
    "b_echo3": sc_b_echo3,
    "c_context_rejected": sc_c_context_rejected,
    "d_assoc_rejected": sc_d_assoc_rejected,
    "e_abort": sc_e_abort_mid_dataset,
    "f_statuses": sc_f_statuses,
    "g_slow_scp": sc_g_slow_scp,
    "h_find20": sc_h_find20,
    "i_move5": sc_i_move5,
    "j_loss": sc_j_loss,
    "k_ipv6": sc_k_ipv6,
    "l_vlan": sc_l_vlan,
}
ALL_NAMES = [*SCENARIOS, "m_midstream"]


def generate_all(
    workdir: str, *, parallel: int = 4, only: list[str] | None = None
) -> dict[str, Scenario]:
    """Run every scenario (each in its own namespace pair, ``parallel`` at a time, the
    latency-sensitive (g) alone first) and derive (m) from (a). Raises on any failure."""
    require_all_tools()
    names = only or ALL_NAMES
    img = make_images(os.path.join(workdir, "images"))
    out: dict[str, Scenario] = {}

    def one(name: str) -> Scenario:
        return run_timed(workdir, name, lambda wd: SCENARIOS[name](wd, img))

    todo = [n for n in names if n in SCENARIOS]
    if "m_midstream" in names and "a_store50" not in todo:
        todo.append("a_store50")
    first = [n for n in todo if n == "g_slow_scp"]  # timing: run it on a quiet machine
    rest = [n for n in todo if n not in first]
    for n in first:
        out[n] = one(n)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
        for n, sc in zip(rest, ex.map(one, rest), strict=True):
            out[n] = sc
    if "m_midstream" in names:
        base = out["a_store50"]
        out["m_midstream"] = run_timed(
            workdir, "m_midstream", lambda wd: sc_m_midstream(wd, img, base)
        )
    return out
