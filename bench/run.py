#!/usr/bin/env python3
"""Runs the peer workload programs (bench/peers/) and summarises them.

    bench/run.py [--runs N] [--quick] [--bin DIR] [--out DIR]
                 [--workloads a,b] [--peers a,b] [--timeout S]

Every (workload, peer) pair runs N times (one process per run), the order of
the pairs rotating by one each round so that no pair always runs first or
after the same neighbour. Prints a table of medians (min-max) and of
warden/peer ratios, checks the issue-7 targets, and writes
<out>/latest.json, <out>/latest.svg (ratios per workload, log scale) and
<out>/latest.md (the tables the README's Performance section shows).
`./dev bench` builds the programs and calls this script.

Standard library only.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent

PEERS = ["warden", "tbb", "asio", "fiber"]
PEER_LABEL = {"warden": "warden", "tbb": "oneTBB", "asio": "Boost.Asio", "fiber": "Boost.Fiber"}
PEER_COLOUR = {"tbb": "#1f77b4", "asio": "#2ca02c", "fiber": "#d62728"}

# workload -> (full n, quick n)
WORKLOADS = {
    "spawn_many": (1_000_000, 100_000),
    "skynet": (1_000_000, 100_000),
    "yield_many": (1_000, 100),
    "chained_spawn": (1_000_000, 100_000),
    "ping_pong": (1_000, 100),
    "timers": (100_000, 10_000),
    "parked_memory": (1_000_000, 100_000),
}

# Per-peer caps on n, with the reason (recorded in the JSON and printed).
# Boost.Fiber gives every fiber its own stack: 1,000,000 simultaneously alive
# fibers take ~9 GB of RSS and ~50 s on this machine (spawn_many), which a
# shared 2-core box cannot afford five times over. Ratios against a capped
# run are per task (wall / n, RSS / n) and marked with '*'.
N_CAP = {
    ("fiber", "spawn_many"): (100_000, "1M live fibers = ~9 GB RSS, ~50 s per run"),
    ("fiber", "skynet"): (100_000, "1M fibers with own stacks = ~3 GB RSS, ~6 s per run"),
    ("fiber", "parked_memory"): (100_000, "1M parked fibers = ~9 GB RSS"),
}

# The targets: (workload, peer, metric, must, goal, label).
# metric: "wall" (median wall ratio), "hwm" (median peak-RSS ratio),
# "bytes" (warden's absolute bytes per parked task).
TARGETS = [
    ("spawn_many", "tbb", "wall", 0.5, 0.35, "spawn_many vs oneTBB"),
    ("skynet", "tbb", "wall", 0.5, 0.3, "skynet vs oneTBB"),
    ("yield_many", "fiber", "wall", 0.2, 0.1, "yield_many vs Boost.Fiber"),
    ("chained_spawn", "tbb", "wall", 1.0, 0.5, "chained_spawn vs oneTBB"),
    ("ping_pong", "fiber", "wall", 0.08, 0.05, "ping_pong vs Boost.Fiber"),
    ("timers", "asio", "wall", 0.2, 0.1, "timers wall vs Boost.Asio"),
    ("timers", "asio", "hwm", 0.3, None, "timers peak RSS vs Boost.Asio"),
    ("parked_memory", None, "bytes", 128.0, 104.0, "parked_memory bytes/task"),
]


def parse_line(line: str) -> dict:
    kind, _, rest = line.partition(" ")
    fields: dict = {"kind": kind}
    if kind == "SKIP":
        head, _, reason = rest.partition(" reason=")
        for tok in head.split():
            k, _, v = tok.partition("=")
            fields[k] = v
        fields["reason"] = reason
        return fields
    for tok in rest.split():
        k, _, v = tok.partition("=")
        fields[k] = v
    for k in ("n", "ok", "hwm_kb", "baseline_kb", "parked_kb"):
        if k in fields:
            fields[k] = int(fields[k])
    for k in ("wall_ms", "bytes_per_task"):
        if k in fields:
            fields[k] = float(fields[k])
    return fields


def run_one(binary: Path, workload: str, n: int, timeout: float) -> dict:
    try:
        p = subprocess.run([str(binary), workload, str(n)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"kind": "ERROR", "error": f"timeout after {timeout:.0f} s"}
    lines = [l for l in p.stdout.splitlines() if l.startswith(("RESULT ", "SKIP "))]
    if len(lines) != 1:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"kind": "ERROR", "error": f"exit {p.returncode}: {err}"}
    r = parse_line(lines[0])
    if r["kind"] == "SKIP" and p.returncode != 3:
        r = {"kind": "ERROR", "error": f"SKIP with exit {p.returncode}"}
    if r["kind"] == "RESULT" and p.returncode not in (0, 1):
        r["ok"] = 0
    if p.stderr.strip():
        r["stderr"] = p.stderr.strip()[-500:]
    return r


def fmt_ms(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_kb(v: float) -> str:
    return f"{v / 1024:.1f}M" if v >= 10240 else f"{v:.0f}k"


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    try:
        info["compiler"] = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        pass
    return info


def summarise(samples: list[dict]) -> dict:
    walls = [s["wall_ms"] for s in samples]
    hwms = [s["hwm_kb"] for s in samples]
    out = {
        "runs": len(samples),
        "ok": all(s.get("ok") == 1 for s in samples),
        "n": samples[0]["n"],
        "wall_ms": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
        "hwm_kb": {"median": statistics.median(hwms), "min": min(hwms), "max": max(hwms)},
    }
    bpt = [s["bytes_per_task"] for s in samples if "bytes_per_task" in s]
    if bpt:
        out["bytes_per_task"] = {"median": statistics.median(bpt), "min": min(bpt), "max": max(bpt)}
    return out


def ratio(summary: dict, workload: str, peer: str, metric: str):
    """warden / peer for a metric; per task when the n differ. (value, per_task)"""
    w = summary.get(workload, {}).get("warden")
    p = summary.get(workload, {}).get(peer)
    if not w or not p or "wall_ms" not in w or "wall_ms" not in p:
        return None, False
    if metric == "bytes":
        wb, pb = w.get("bytes_per_task"), p.get("bytes_per_task")
        if not wb or not pb or pb["median"] <= 0:
            return None, False
        return wb["median"] / pb["median"], False
    key = "wall_ms" if metric == "wall" else "hwm_kb"
    wv, pv = w[key]["median"], p[key]["median"]
    per_task = w["n"] != p["n"]
    if per_task:
        wv, pv = wv / w["n"], pv / p["n"]
    if pv <= 0:
        return None, per_task
    return wv / pv, per_task


def print_table(summary: dict, skips: dict, errors: dict, workloads: list[str], peers: list[str]) -> None:
    print()
    print(f"{'workload':<14} {'peer':<11} {'n':>9}  {'wall ms median (min-max)':<28} {'peak RSS':>9}  "
          f"{'warden/peer':>11}")
    print("-" * 92)
    for w in workloads:
        for p in peers:
            s = summary.get(w, {}).get(p)
            if s is None:
                why = skips.get((w, p)) or errors.get((w, p)) or "not run"
                tag = "SKIP" if (w, p) in skips else "ERROR" if (w, p) in errors else "-"
                print(f"{w:<14} {PEER_LABEL[p]:<11} {'':>9}  {tag}: {why}")
                continue
            wall = s["wall_ms"]
            cell = f"{fmt_ms(wall['median'])} ({fmt_ms(wall['min'])}-{fmt_ms(wall['max'])})"
            extra = ""
            if "bytes_per_task" in s:
                extra = f"  {s['bytes_per_task']['median']:.0f} B/task"
            if not s["ok"]:
                extra += "  CHECK FAILED"
            r = ""
            if p != "warden":
                v, per_task = ratio(summary, w, p, "wall")
                if v is not None:
                    r = f"{v:.3f}{'*' if per_task else ''}"
            print(f"{w:<14} {PEER_LABEL[p]:<11} {s['n']:>9}  {cell:<28} {fmt_kb(s['hwm_kb']['median']):>9}  "
                  f"{r:>11}{extra}")
        print()
    print("* per-task ratio (the peer ran with a smaller n; see N_CAP in bench/run.py)")


def check_targets(summary: dict) -> list[dict]:
    results = []
    for workload, peer, metric, must, goal, label in TARGETS:
        entry = {"label": label, "workload": workload, "peer": peer, "metric": metric, "must": must, "goal": goal}
        if metric == "bytes":
            w = summary.get(workload, {}).get("warden")
            value = w["bytes_per_task"]["median"] if w and "bytes_per_task" in w else None
            per_task = False
        else:
            value, per_task = ratio(summary, workload, peer, metric)
        entry["value"] = value
        entry["per_task"] = per_task
        if value is None:
            entry["status"] = "n/a"
        elif goal is not None and value <= goal:
            entry["status"] = "goal"
        elif value <= must:
            entry["status"] = "must"
        else:
            entry["status"] = "MISS"
            entry["factor_over_must"] = value / must
        results.append(entry)
    return results


def print_targets(targets: list[dict]) -> None:
    print()
    print("issue 7 targets (medians, warden / peer; parked_memory in bytes per task)")
    print(f"{'target':<32} {'value':>9} {'must':>7} {'goal':>7}  status")
    for t in targets:
        v = "n/a" if t["value"] is None else (f"{t['value']:.1f}" if t["metric"] == "bytes" else f"{t['value']:.3f}")
        goal = "-" if t["goal"] is None else (f"{t['goal']:g}")
        status = {"goal": "meets goal", "must": "meets must", "MISS": "MISS", "n/a": "n/a"}[t["status"]]
        if t["status"] == "MISS":
            status += f" ({(t['factor_over_must'] - 1) * 100:.1f}% over the must)"
        print(f"{t['label']:<32} {v:>9} {t['must']:>7g} {goal:>7}  {status}")


def write_markdown(path: Path, summary: dict, targets: list[dict], workloads: list[str], peers: list[str],
                   label: str) -> None:
    """The README's Performance table: median wall time per runtime, and
    the issue-7 targets with their status."""
    others = [p for p in peers if p != "warden"]
    lines = [f"Medians of one run of `./dev bench` ({label}).", ""]
    lines.append("| workload | " + " | ".join(PEER_LABEL[p] for p in peers) + " | " +
                 " | ".join(f"warden / {PEER_LABEL[p]}" for p in others) + " |")
    lines.append("|---" * (len(peers) + len(others) + 1) + "|")
    for w in workloads:
        cells = []
        for p in peers:
            s = summary.get(w, {}).get(p)
            cells.append("-" if s is None else f"{fmt_ms(s['wall_ms']['median'])} ms")
        for p in others:
            v, per_task = ratio(summary, w, p, "wall")
            cells.append("-" if v is None else f"{v:.3f}{'*' if per_task else ''}")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("\\* per task: the peer ran a smaller n (see `N_CAP` in bench/run.py).")
    lines.append("")
    lines.append("| target | measured | must | goal | status |")
    lines.append("|---|---|---|---|---|")
    for t in targets:
        v = "n/a" if t["value"] is None else (f"{t['value']:.1f} B" if t["metric"] == "bytes" else f"{t['value']:.3f}")
        goal = "-" if t["goal"] is None else f"{t['goal']:g}"
        status = {"goal": "meets the goal", "must": "meets the must", "MISS": "missed", "n/a": "n/a"}[t["status"]]
        if t["status"] == "MISS":
            status += f" ({(t['factor_over_must'] - 1) * 100:.1f}% over the must)"
        lines.append(f"| {t['label']} | {v} | {t['must']:g} | {goal} | {status} |")
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- SVG chart
def write_svg(path: Path, summary: dict, targets: list[dict], workloads: list[str], peers: list[str],
              meta: dict) -> None:
    """Horizontal bars of warden/peer ratios on a log axis, one group per
    workload (plus timers' peak RSS and parked_memory's bytes per task);
    below 1 (left of the line) warden is faster / smaller."""
    rows = []  # (group label, peer, value, per_task, must)
    must_for = {(w, p, m): must for (w, p, m, must, _goal, _label) in TARGETS if p is not None}
    groups = [(w, "wall", w) for w in workloads]
    if "timers" in workloads:
        groups.append(("timers", "hwm", "timers (peak RSS)"))
    if "parked_memory" in workloads:
        groups.append(("parked_memory", "bytes", "parked_memory (B/task)"))
    for w, metric, label in groups:
        for p in peers:
            if p == "warden":
                continue
            v, per_task = ratio(summary, w, p, metric)
            rows.append((label, p, v, per_task, must_for.get((w, p, metric))))

    values = [r[2] for r in rows if r[2] is not None and r[2] > 0]
    lo = 10 ** math.floor(math.log10(min(values + [0.5]))) if values else 0.01
    hi = 10 ** math.ceil(math.log10(max(values + [2.0]))) if values else 10
    left, right_pad, bar_h, gap, top = 190, 40, 14, 10, 70
    width = 900
    plot_w = width - left - right_pad
    n_groups = len(groups)
    bars_per_group = len([p for p in peers if p != "warden"])
    height = top + n_groups * (bars_per_group * bar_h + gap) + 90

    def x_of(v: float) -> float:
        return left + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">'
           f'warden / peer (median; log scale; left of 1 = warden faster or smaller)</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{escape(meta)}</text>']
    plot_bottom = height - 70
    # grid: decades and 2x / 5x
    d = lo
    while d <= hi * 1.0001:
        for m in (1, 2, 5):
            v = d * m
            if v < lo * 0.9999 or v > hi * 1.0001:
                continue
            x = x_of(v)
            strong = m == 1
            out.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{plot_bottom}" '
                       f'stroke="{"#bbb" if strong else "#e4e4e4"}" stroke-width="1"/>')
            if strong or (hi / lo) <= 1000:
                out.append(f'<text x="{x:.1f}" y="{plot_bottom + 16}" text-anchor="middle" '
                           f'fill="{"#000" if strong else "#777"}">{v:g}</text>')
        d *= 10
    x1 = x_of(1.0)
    out.append(f'<line x1="{x1:.1f}" y1="{top - 12}" x2="{x1:.1f}" y2="{plot_bottom}" stroke="#000" stroke-width="2"/>')
    out.append(f'<text x="{x1:.1f}" y="{top - 16}" text-anchor="middle" font-weight="bold">1 (parity)</text>')

    y = top
    row_i = 0
    for w, metric, label in groups:
        group_rows = rows[row_i:row_i + bars_per_group]
        row_i += bars_per_group
        out.append(f'<text x="{left - 8}" y="{y + bars_per_group * bar_h / 2 + 4:.1f}" text-anchor="end" '
                   f'font-weight="bold">{escape(label)}</text>')
        for (_, p, v, per_task, must) in group_rows:
            colour = PEER_COLOUR.get(p, "#888")
            if v is None or v <= 0:
                out.append(f'<text x="{left + 4}" y="{y + bar_h - 3}" fill="#999" font-size="10">'
                           f'{PEER_LABEL[p]}: not comparable (skipped)</text>')
            else:
                xv = x_of(min(max(v, lo), hi))
                x0, x1b = min(x1, xv), max(x1, xv)
                out.append(f'<rect x="{x0:.1f}" y="{y + 1}" width="{max(x1b - x0, 1):.1f}" height="{bar_h - 2}" '
                           f'fill="{colour}" fill-opacity="0.8"/>')
                txt = f'{v:.3g}{"*" if per_task else ""} vs {PEER_LABEL[p]}'
                tx = xv + 4 if v >= 1 else xv - 4
                anchor = "start" if v >= 1 else "end"
                out.append(f'<text x="{tx:.1f}" y="{y + bar_h - 3}" text-anchor="{anchor}" font-size="10">'
                           f'{escape(txt)}</text>')
            if must is not None:
                xm = x_of(must)
                out.append(f'<line x1="{xm:.1f}" y1="{y - 1}" x2="{xm:.1f}" y2="{y + bar_h + 1}" stroke="#000" '
                           f'stroke-width="3" stroke-dasharray="3,2"/>')
            y += bar_h
        y += gap
    # legend
    ly = plot_bottom + 36
    lx = left
    for p in peers:
        if p == "warden":
            continue
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{PEER_COLOUR.get(p, "#888")}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{PEER_LABEL[p]}</text>')
        lx += 120
    out.append(f'<line x1="{lx}" y1="{ly - 10}" x2="{lx}" y2="{ly + 2}" stroke="#000" stroke-width="3" '
               f'stroke-dasharray="3,2"/>')
    out.append(f'<text x="{lx + 6}" y="{ly}">issue-7 "must" target</text>')
    out.append(f'<text x="{lx + 190}" y="{ly}" fill="#555">* per task (peer ran a smaller n)</text>')
    out.append('</svg>')
    path.write_text("\n".join(out) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="runs per pair (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smaller n, 1 run")
    ap.add_argument("--bin", default=str(HERE.parent / "build" / "release-peers" / "bench" / "peers"),
                    help="directory holding <peer>_workloads")
    ap.add_argument("--out", default=str(HERE / "results"), help="where latest.json / latest.svg go")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    args = ap.parse_args()

    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    workloads = [w for w in args.workloads.split(",") if w]
    peers = [p for p in args.peers.split(",") if p]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    for p in peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p}")
    bin_dir = Path(args.bin)
    for p in peers:
        if not (bin_dir / f"{p}_workloads").exists():
            print(f"run.py: {bin_dir / (p + '_workloads')} not built (./dev bench builds it)", file=sys.stderr)
            return 2

    def n_for(w: str, p: str) -> int:
        n = WORKLOADS[w][1 if args.quick else 0]
        cap = N_CAP.get((p, w))
        return min(n, cap[0]) if cap else n

    pairs = [(w, p) for w in workloads for p in peers]
    meta = machine_info()
    print(f"{len(pairs)} pairs x {runs} run(s); {meta.get('cpu', '?')}, {meta['nproc']} CPUs; "
          f"load {' '.join(meta.get('loadavg_start', []))}")
    for (p, w), (cap, why) in N_CAP.items():
        if p in peers and w in workloads and cap < WORKLOADS[w][1 if args.quick else 0]:
            print(f"  note: {PEER_LABEL[p]} {w} runs with n={cap}: {why}")

    raw: list[dict] = []
    samples: dict = {}
    skips: dict = {}
    errors: dict = {}
    for r in range(runs):
        k = r % len(pairs)
        order = pairs[k:] + pairs[:k]
        for i, (w, p) in enumerate(order):
            if (w, p) in skips:
                continue
            n = n_for(w, p)
            print(f"\r  round {r + 1}/{runs}  {i + 1:>2}/{len(order)}  {p:<7} {w:<14} n={n:<8}",
                  end="", flush=True)
            res = run_one(bin_dir / f"{p}_workloads", w, n, args.timeout)
            res.update({"round": r, "peer": p, "workload": w, "n_requested": n})
            raw.append(res)
            if res["kind"] == "SKIP":
                skips[(w, p)] = res.get("reason", "")
            elif res["kind"] == "ERROR":
                errors[(w, p)] = res["error"]
            else:
                samples.setdefault(w, {}).setdefault(p, []).append(res)
    print("\r" + " " * 80 + "\r", end="")
    try:
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass

    summary = {w: {p: summarise(s) for p, s in per.items()} for w, per in samples.items()}
    print_table(summary, skips, errors, workloads, peers)
    targets = check_targets(summary)
    print_targets(targets)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": meta,
        "config": {"runs": runs, "quick": args.quick, "worker_threads": 2,
                   "n": {w: {p: n_for(w, p) for p in peers} for w in workloads},
                   "n_caps": {f"{p}/{w}": {"n": c, "why": why} for (p, w), (c, why) in N_CAP.items()}},
        "summary": summary,
        "ratios_warden_over_peer": {
            w: {p: ratio(summary, w, p, "wall")[0] for p in peers if p != "warden"} for w in workloads},
        "targets": targets,
        "skipped": [{"workload": w, "peer": p, "reason": why} for (w, p), why in skips.items()],
        "errors": [{"workload": w, "peer": p, "error": e} for (w, p), e in errors.items()],
        "runs": raw,
    }
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    label = (f"{meta.get('cpu', '?')}, {meta['nproc']} CPUs, 2 workers; {runs} run(s)"
             f"{' (quick)' if args.quick else ''}; {doc['generated'][:10]}")
    write_svg(out_dir / "latest.svg", summary, targets, workloads, peers, label)
    write_markdown(out_dir / "latest.md", summary, targets, workloads, peers, label)
    print(f"\nwrote {out_dir / 'latest.json'}, {out_dir / 'latest.svg'} and {out_dir / 'latest.md'}")
    bad = [f"{w}/{p}" for w, per in summary.items() for p, s in per.items() if not s["ok"]]
    if errors or bad:
        print("failed: " + ", ".join(bad + [f"{w}/{p}: {e}" for (w, p), e in errors.items()]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
