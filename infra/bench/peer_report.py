#!/usr/bin/env python3
"""Rows and notes of `./dev bench peer` from its phases' files.

    peer_report.py OUT_DIR  ->  rows "name|value|unit|floor|target" on stdout,
                                OUT_DIR/notes-peer.md

Each system (flashgate, peer) ran each scenario (purchase -> 202, soldout -> 409) in two
rounds: peer-<system>-<scenario>-<round>.json is fg-load's result, peer-cpu-….json the
CPU seconds of the service, Redis and the broker over the phase, peer-batch-….json the
reserve calls' batch sizes (flashgate only). Rates and latencies count the scenario's
documented answer; a rate is the rounds' answers over their measured seconds, a latency
the mean of the rounds'; CPU per answer is the rounds' CPU over their answers of that
status, warm-up included.
"""
import glob
import json
import os
import sys

OUT = sys.argv[1]
SYSTEMS = ("flashgate", "peer")
SCENARIOS = {"purchase": "202", "soldout": "409"}
PROCS = ("service", "redis", "broker", "load generator")


def load(kind, system, scenario):
    runs = []
    for path in sorted(glob.glob(f"{OUT}/peer-{kind}{system}-{scenario}-*.json")):
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    return runs


def figures(system, scenario):
    code = SCENARIOS[scenario]
    runs, cpus = load("", system, scenario), load("cpu-", system, scenario)
    if not runs:
        return None
    answers = sum(r["statuses"].get(code, 0) for r in runs)
    answers_all = sum(r.get("statuses_all", r["statuses"]).get(code, 0) for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    lat = lambda q: [r["by_status"][code][q] for r in runs if code in r["by_status"]]
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    cpu = {p: sum(c[k] for c in cpus) for p, k in zip(PROCS, ("service", "redis", "broker"))}
    cpu["load generator"] = sum(r.get("cpu_s", 0.0) for r in runs)
    per = {p: v * 1e6 / answers_all for p, v in cpu.items()} if answers_all else {}
    return {
        "rate": answers / seconds if seconds else 0.0,
        "rates": [r["statuses"].get(code, 0) / r["seconds"] for r in runs],
        "p50": mean(lat("p50_ms")), "p99": mean(lat("p99_ms")),
        "per": per, "total": sum(per.values()) if per else None,
        "statuses": [r["statuses"] for r in runs], "errors": sum(r["errors"] for r in runs),
    }


def num(v, digits=2):
    return "" if v is None else f"{v:.{digits}f}"


f = {(s, c): figures(s, c) for s in SYSTEMS for c in SCENARIOS}
rows = []
for scenario, code in SCENARIOS.items():
    fg, peer = f[("flashgate", scenario)], f[("peer", scenario)]
    if not fg or not peer:
        continue
    what = "purchase, unique buyers" if scenario == "purchase" else "sold-out storm"
    rows.append([f"peer rps ({what}, {code})", num(peer["rate"], 0), "rps", "", ""])
    rows.append([f"flashgate rps vs the peer ({what}, {code})", num(fg["rate"], 0), "rps",
                 num(peer["rate"], 0), ">=1.0"])
    for q in ("p50", "p99"):
        rows.append([f"flashgate {q} vs the peer ({what}, {code})", num(fg[q]), "ms", num(peer[q]), ""])
    rows.append([f"flashgate CPU per {code} vs the peer, all processes ({what})", num(fg["total"], 1), "µs",
                 num(peer["total"], 1), "<=1.0" if scenario == "purchase" else ""])
    for proc in PROCS:
        if not fg["per"].get(proc) and not peer["per"].get(proc):
            continue  # e.g. the broker in a sold-out storm: neither asks it
        rows.append([f"flashgate CPU per {code} vs the peer, {proc} ({what})", num(fg["per"].get(proc), 1), "µs",
                     num(peer["per"].get(proc), 1), ""])
for r in rows:
    print("|".join(r))

notes = ["### peer (the original design, same stack, A B A B)", ""]
batches = [json.load(open(p)) for p in sorted(glob.glob(f"{OUT}/peer-batch-flashgate-purchase-*.json"))]
for scenario, code in SCENARIOS.items():
    notes += [f"- {scenario}: rate per round (flashgate, peer): "
              + "; ".join(f"{s} " + ", ".join(f"{x:.0f}" for x in f[(s, scenario)]["rates"])
                          for s in SYSTEMS if f[(s, scenario)]),
              "  answers per round: "
              + "; ".join(f"{s} {f[(s, scenario)]['statuses']} (transport errors {f[(s, scenario)]['errors']})"
                          for s in SYSTEMS if f[(s, scenario)])]
notes += ["", "- CPU per answer by process (µs, user + system, warm-up and the drain to the broker included):", "",
          "| system, scenario | " + " | ".join(PROCS) + " | all |", "|---|" + "---:|" * (len(PROCS) + 1)]
for scenario, code in SCENARIOS.items():
    for s in SYSTEMS:
        x = f[(s, scenario)]
        if x and x["per"]:
            notes.append(f"| {s}, {scenario} ({code}) | " + " | ".join(f"{x['per'][p]:.1f}" for p in PROCS)
                         + f" | {x['total']:.1f} |")
if batches:
    notes += ["", "- flashgate's reserve calls in the purchase rounds (attempts per call, "
              "`flashgate_reserve_batch_size`): "
              + "; ".join(f"{b['calls']} calls, mean {b['mean']}, by bucket {b['buckets']}" for b in batches)]
notes.append("")
with open(os.path.join(OUT, "notes-peer.md"), "w", encoding="utf-8") as fh:
    fh.write("\n".join(notes) + "\n")
