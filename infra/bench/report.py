#!/usr/bin/env python3
"""Turns the rows the suites recorded (results.jsonl) into the bench table.

    report.py OUT_DIR [--build-seconds N] [--total-seconds N]

Prints the table and writes OUT_DIR/report.md (table, machine, suites, notes-*.md) and
OUT_DIR/report.json (a list of {name, value, unit, floor, ratio, target, met}).
"""
import argparse
import glob
import json
import os
import platform
import subprocess
from datetime import datetime, timezone


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}" if v < 10 else f"{v:.1f}"
    return str(v)


def target_text(row):
    t = row["target"]
    if not t:
        return "—"
    op = t[:2] if t[:2] in (">=", "<=") else t[:1]
    x = t[len(op):]
    sym = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}[op]
    if row["floor"] is not None and op in (">=", "<="):
        return f"{sym} {x}× floor"
    return f"{sym} {x} {row['unit']}"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} × {cpu}{mem}, {platform.system()} {platform.release()}; load average at the end {load}"


def commit(root):
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--root", default=".")
    ap.add_argument("--build-seconds", type=int)
    ap.add_argument("--total-seconds", type=int)
    a = ap.parse_args()
    rows = []
    with open(os.path.join(a.out, "results.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    suites = []
    path = os.path.join(a.out, "suites.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            suites = [line.split() for line in f if line.strip()]

    head = ["figure", "value", "unit", "floor", "ratio", "target", "met"]
    table = [[r["name"], fmt(r["value"]), r["unit"], fmt(r["floor"]), fmt(r["ratio"]), target_text(r),
              {True: "yes", False: "NO", None: "—"}[r["met"]]] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print()
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print(line(t))
    unmet = [r["name"] for r in rows if r["met"] is False]
    print()
    for s in suites:
        print(f"suite {s[0]}: {s[1]} in {s[2]} s")
    if a.build_seconds is not None:
        print(f"build {a.build_seconds} s, total {a.total_seconds} s")
    print(f"targets met: {sum(1 for r in rows if r['met'])} of {sum(1 for r in rows if r['met'] is not None)}"
          + (f" (not met: {', '.join(unmet)})" if unmet else ""))

    with open(os.path.join(a.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False, indent=2)
        f.write("\n")
    root = a.root
    md = [
        "# flashgate bench report",
        "",
        f"- run: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit(root)}",
        f"- machine: {machine()}",
    ]
    if a.build_seconds is not None:
        md.append(f"- time: build {a.build_seconds} s, whole run {a.total_seconds} s")
    if suites:
        md.append("- suites: " + ", ".join(f"{s[0]} ({s[1]}, {s[2]} s)" for s in suites))
    md += ["", "| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    md += ["| " + " | ".join(t) + " |" for t in table]
    md.append("")
    for notes in sorted(glob.glob(os.path.join(a.out, "notes-*.md"))):
        with open(notes, encoding="utf-8") as f:
            md.append(f.read())
    with open(os.path.join(a.out, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
