#!/usr/bin/python3
"""Plots the scaling curve of one machine from benches/scale/curve.csv (written by curve.sh).

Four panels: wall time and peak RSS against messages (at 200 systems) and against systems (at
100,000 messages), log scales (linear time and memory against systems); the goal of issue 15 (1M messages over 200 systems in <= 20
minutes and <= 2 GiB) drawn as dashed lines. A point whose run did not finish (exit status not
0) is drawn hollow and labelled with its exit status and the messages it submitted. The last
row of each (messages, systems) is used. Writes CSV's stem + .svg and .png beside it.

Needs matplotlib (Debian: apt-get install python3-matplotlib; run with /usr/bin/python3).

  /usr/bin/python3 benches/scale/plot-curve.py [benches/scale/curve.csv]
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

GOAL_WALL_S = 20 * 60
GOAL_RSS_GIB = 2.0
BY_MESSAGES_SYSTEMS = 200
BY_SYSTEMS_MESSAGES = 100_000


def load(path):
    rows = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                key = (int(row["messages"]), int(row["systems"]))
                row["wall_s"] = float(row["wall_s"])
                row["rss_gib"] = int(row["peak_rss_kib"]) / 2**20
            except (KeyError, ValueError) as e:
                sys.exit(f"{path}:{line}: unreadable row ({e}); curve.sh writes these rows, rerun the point")
            rows[key] = row
    return rows


def panel(ax, points, x_of, xlabel, y_key, ylabel, goal=None, ylog=True):
    done = [(x_of(k), r[y_key]) for k, r in points if r["exit_status"] == "0"]
    cut = [(x_of(k), r) for k, r in points if r["exit_status"] != "0"]
    fmt = (lambda v: f"{v:,.0f} s") if y_key == "wall_s" else (lambda v: f"{v:.2f} GiB")
    if done:
        ax.plot(*zip(*done), "o-", color="tab:blue", label="finished")
        for x, y in done:
            ax.annotate(fmt(y), (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7)
    for x, r in cut:
        ax.plot([x], [r[y_key]], "o", mfc="none", color="tab:red")
        ax.annotate(
            f"{fmt(r[y_key])}: exit {r['exit_status']}, {int(r['submitted'] or 0):,} submitted",
            (x, r[y_key]), textcoords="offset points", xytext=(-10, 6), ha="right", fontsize=7, color="tab:red",
        )
    if goal is not None:
        ax.axhline(goal, ls="--", color="gray", lw=1)
        ax.text(0.02, goal, f"goal for 1M messages: {fmt(goal)}", transform=ax.get_yaxis_transform(),
                va="bottom", fontsize=7, color="gray")
    ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0, top=max(r[y_key] for _, r in points) * 1.2 if points else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.15, y=0.15)
    ax.grid(True, which="both", lw=0.3)


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("curve.csv"))
    rows = load(path)
    by_m = sorted((k, r) for k, r in rows.items() if k[1] == BY_MESSAGES_SYSTEMS)
    by_s = sorted((k, r) for k, r in rows.items() if k[0] == BY_SYSTEMS_MESSAGES)
    if not by_m and not by_s:
        sys.exit(f"{path}: no row at {BY_MESSAGES_SYSTEMS} systems or {BY_SYSTEMS_MESSAGES:,} messages to plot")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panel(axes[0][0], by_m, lambda k: k[0], f"messages (at {BY_MESSAGES_SYSTEMS} systems)", "wall_s",
          "wall time (s)", GOAL_WALL_S)
    panel(axes[1][0], by_m, lambda k: k[0], f"messages (at {BY_MESSAGES_SYSTEMS} systems)", "rss_gib",
          "peak RSS (GiB)", GOAL_RSS_GIB)
    panel(axes[0][1], by_s, lambda k: k[1], f"systems (at {BY_SYSTEMS_MESSAGES:,} messages)", "wall_s",
          "wall time (s)", ylog=False)
    panel(axes[1][1], by_s, lambda k: k[1], f"systems (at {BY_SYSTEMS_MESSAGES:,} messages)", "rss_gib",
          "peak RSS (GiB)", ylog=False)
    loads = [float(r["load1_mean"]) for r in rows.values() if r.get("load1_mean")]
    note = f", load average (1 min) {min(loads):.1f}-{max(loads):.1f} during the runs" if loads else ""
    fig.suptitle(f"smtplab run, loopback backend, release build, one 2-core machine shared with builds{note}",
                 fontsize=10)
    fig.tight_layout()
    for ext in ("svg", "png"):
        out = path.with_suffix("." + ext)
        fig.savefig(out, dpi=110)
        print(out)


if __name__ == "__main__":
    main()
