#!/usr/bin/env python3
"""bench/report.py RESULTS OUT MODE RUNS SECS BIG_MB STREAM_MB SMALL TAGS PUBS — medians of the
raw figures bench/run recorded, Berth/reference ratios and the issue-6 targets, as a table on
stdout and as JSON in OUT."""
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

res, out, mode, runs, secs, big, stream, small, tags, pubs = sys.argv[1:11]
raw = defaultdict(lambda: defaultdict(list))
for line in open(res):
    metric, server, value = line.split()
    raw[metric][server].append(float(value))
med = {m: {s: statistics.median(v) for s, v in d.items()} for m, d in raw.items()}

# (metric, unit, reference, higher is better, target: (kind, bound) or None)
#   kind "ratio": Berth/reference must be >= bound (higher better) or <= bound (lower better);
#   kind "abs": Berth's own figure must be <= bound.
ROWS = [
    ("trust_get_timestamp_c16_rps", "req/s", "notary", True, ("ratio", 3)),
    ("trust_get_timestamp_c16_p99_ms", "ms", "notary", False, ("ratio", 1 / 3)),
    ("trust_get_timestamp_c128_rps", "req/s", "notary", True, ("ratio", 3)),
    ("trust_get_timestamp_c128_p99_ms", "ms", "notary", False, ("ratio", 1 / 3)),
    ("trust_get_targets_c16_rps", "req/s", "notary", True, ("ratio", 3)),
    ("trust_get_targets_c16_p99_ms", "ms", "notary", False, ("ratio", 1 / 3)),
    ("trust_get_targets_c128_rps", "req/s", "notary", True, ("ratio", 3)),
    ("trust_get_targets_c128_p99_ms", "ms", "notary", False, ("ratio", 1 / 3)),
    # The same files as static files behind nginx: the machine's limit for this load.
    ("trust_get_timestamp_c16_rps", "req/s", "nginx", True, None),
    ("trust_get_timestamp_c16_p99_ms", "ms", "nginx", False, None),
    ("trust_get_timestamp_c128_rps", "req/s", "nginx", True, None),
    ("trust_get_timestamp_c128_p99_ms", "ms", "nginx", False, None),
    ("trust_get_targets_c16_rps", "req/s", "nginx", True, None),
    ("trust_get_targets_c16_p99_ms", "ms", "nginx", False, None),
    ("trust_get_targets_c128_rps", "req/s", "nginx", True, None),
    ("trust_get_targets_c128_p99_ms", "ms", "nginx", False, None),
    ("publish_notary_cli_median_ms", "ms", "notary", False, ("ratio", 0.5)),
    ("publish_notary_cli_p99_ms", "ms", "notary", False, ("ratio", 0.5)),
    ("publish_post_median_ms", "ms", "notary", False, ("ratio", 0.5)),
    ("publish_post_p99_ms", "ms", "notary", False, ("ratio", 0.5)),
    ("publish_rust_client_median_ms", "ms", "notary", False, None),
    ("blob_push_mb_s", "MB/s", "registry", True, ("ratio", 1.5)),
    ("blob_push_mb_s", "MB/s", "sha256sum", True, ("ratio", 0.8)),
    ("blob_pull_mb_s", "MB/s", "nginx", True, ("ratio", 0.9)),
    ("blob_pull_mb_s", "MB/s", "registry", True, None),
    ("small_push_per_s", "blobs/s", "registry", True, None),
    ("small_pull_per_s", "blobs/s", "registry", True, None),
    ("manifest_get_c16_rps", "req/s", "registry", True, ("ratio", 3)),
    ("manifest_get_c16_p99_ms", "ms", "registry", False, None),
    ("manifest_get_c128_rps", "req/s", "registry", True, ("ratio", 3)),
    ("manifest_get_c128_p99_ms", "ms", "registry", False, None),
    ("tags_page_p99_ms", "ms", "registry", False, ("abs", 10)),
    ("tags_page_entries", "tags", "registry", True, None),
    ("rss_idle_mib", "MiB", "registry", False, ("abs", 30)),
    ("rss_idle_mib", "MiB", "notary", False, None),
    ("rss_trust_get_mib", "MiB", "notary", False, None),
    ("rss_manifest_get_mib", "MiB", "registry", False, None),
    ("rss_blob_push_mib", "MiB", "registry", False, None),
    ("rss_blob_pull_mib", "MiB", "registry", False, None),
    ("rss_stream_push_mib", "MiB", "registry", False, ("abs", 64)),
    ("rss_stream_pull_mib", "MiB", "registry", False, ("abs", 64)),
    ("rss_end_mib", "MiB", None, False, None),
    ("rss_hwm_mib", "MiB", None, False, None),
    # The distributed column (issue 12): Berth on PostgreSQL + Garage against docker-registry
    # with its S3 driver on the same Garage, and against Berth embedded for the trust hot path
    # (berth_emb: the embedded server measured again beside the distributed one).
    ("blob_push_mb_s", "MB/s", "registry_s3", True, ("ratio", 1.5), "berth_dist"),
    ("blob_pull_mb_s", "MB/s", "registry_s3", True, None, "berth_dist"),
    ("manifest_get_c16_rps", "req/s", "registry_s3", True, ("ratio", 3), "berth_dist"),
    ("manifest_get_c128_rps", "req/s", "registry_s3", True, ("ratio", 3), "berth_dist"),
    ("manifest_get_c16_p99_ms", "ms", "registry_s3", False, None, "berth_dist"),
    ("tags_page_p99_ms", "ms", "registry_s3", False, None, "berth_dist"),
    ("trust_get_timestamp_c16_rps", "req/s", "berth_emb", True, ("ratio", 0.8), "berth_dist"),
    ("trust_get_timestamp_c128_rps", "req/s", "berth_emb", True, ("ratio", 0.8), "berth_dist"),
    ("trust_get_targets_c16_rps", "req/s", "berth_emb", True, ("ratio", 0.8), "berth_dist"),
    ("trust_get_targets_c128_rps", "req/s", "berth_emb", True, ("ratio", 0.8), "berth_dist"),
    ("publish_post_median_ms", "ms", "berth", False, None, "berth_dist"),
    ("rss_idle_mib", "MiB", "registry_s3", False, None, "berth_dist"),
]

rows = []
for metric, unit, ref, higher, target, *who in ROWS:
    # Rows compare Berth embedded unless they name another subject (the distributed column).
    subject = who[0] if who else "berth"
    b = med.get(metric, {}).get(subject)
    r = med.get(metric, {}).get(ref) if ref else None
    ratio = b / r if b is not None and r else None
    met = None
    if target and b is not None:
        kind, bound = target
        if kind == "abs":
            met = b <= bound
        elif ratio is not None:
            met = ratio >= bound if higher else ratio <= bound
    if target:
        kind, bound = target
        tdesc = (f"<= {bound:g} {unit}" if kind == "abs"
                 else (">= " if higher else "<= ") + (f"{bound:.2f}x" if bound < 1 else f"{bound:g}x"))
    else:
        tdesc = ""
    rows.append({"metric": metric, "subject": subject, "unit": unit, "berth": b, "reference": ref, "ref_value": r,
                 "ratio": ratio, "target": tdesc, "met": met,
                 "runs": len(raw.get(metric, {}).get(subject, []))})


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def git(*a):
    try:
        return subprocess.run(["git", *a], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return ""


mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
machine = {"nproc": os.cpu_count(), "mem_gib": round(mem_kib / 2**20, 1), "cpu": cpu(),
           "kernel": platform.release(), "loadavg_at_end": os.getloadavg()}
doc = {"mode": mode, "runs": int(runs), "wrk_secs": int(secs), "blob_mib": int(big),
       "stream_mib": int(stream), "small_blobs": int(small), "tags": int(tags),
       "publishes_per_run": int(pubs), "commit": git("rev-parse", "--short", "HEAD"),
       "machine": machine, "rows": rows, "raw": {m: dict(d) for m, d in raw.items()}}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}"


print(f"| workload | unit | Berth | reference | Berth/ref | target | met |")
print(f"|---|---|---:|---:|---:|---|---|")
for r in rows:
    refcell = f"{fmt(r['ref_value'])} ({r['reference']})" if r["reference"] else "-"
    ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
    met = {True: "yes", False: "**no**", None: ""}[r["met"]]
    name = r["metric"] if r["subject"] == "berth" else f"{r['metric']} ({r['subject']})"
    print(f"| {name} | {r['unit']} | {fmt(r['berth'])} | {refcell} | {ratio} | {r['target']} | {met} |")
print(f"\n{mode} mode: {runs} run(s) per figure (median), wrk {secs}s per load, blob {big} MiB, "
      f"stream {stream} MiB, {small} small blobs, {tags} tags, {pubs} publishes per run; "
      f"machine: {machine['nproc']} cpu, {machine['mem_gib']} GiB, {machine['cpu']}; JSON: {out}")
