#!/usr/bin/env python3
"""How many setting arms plan a learned class the same as another arm (replays an explorer can skip).

Usage: arm_plans.py HOST PORT [PG_BIN]   (HOST: a socket directory; runs psql as user postgres; standard library only)

For every class in ruvector.dag_query_class_log() with a stored text, plans the text under each arm (EXPLAIN, steering
and capture off) and compares plan shapes (node types, relations, indexes, join types). Prints how many arm plans
differ from the native plan, how many of those repeat an earlier arm's plan, and the replay time the log recorded
for the repeats. The arms are host-postgres/src/steering.rs's ARMS, in order.
"""
import hashlib
import json
import os
import subprocess
import sys

ARMS = [
    [],
    [("enable_nestloop", "off")],
    [("enable_hashjoin", "off")],
    [("enable_mergejoin", "off")],
    [("enable_seqscan", "off")],
    [("enable_indexscan", "off")],
    [("enable_bitmapscan", "off")],
    [("max_parallel_workers_per_gather", "0")],
    [("enable_nestloop", "off"), ("enable_mergejoin", "off")],
    [("enable_indexscan", "off"), ("enable_indexonlyscan", "off"), ("enable_bitmapscan", "off")],
    [("enable_hashjoin", "off"), ("enable_mergejoin", "off")],
]


def label(arm):
    return ",".join(f"{k}={v}" for k, v in arm) or "native"


def shape(node):
    head = "|".join(node.get(k, "") for k in ("Node Type", "Relation Name", "Index Name", "Join Type"))
    return head + "(" + ",".join(shape(c) for c in node.get("Plans", [])) + ")"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    host, port = sys.argv[1], sys.argv[2]
    psql_bin = os.path.join(sys.argv[3] if len(sys.argv) > 3 else "/usr/lib/postgresql/15/bin", "psql")
    env = dict(os.environ, PGOPTIONS="-c ruvector.dag_steering=off -c ruvector.neural_dag_enabled=off")

    def psql(sql):
        cmd = [psql_bin, "-X", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1"]
        return subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env)

    out = psql(
        "SELECT json_agg(json_build_object('replays', replays, 'text', query_text)) FROM ruvector.dag_query_class_log() "
        "WHERE query_text IS NOT NULL;\n"
    )
    if out.returncode != 0:
        sys.exit(out.stderr)
    classes = json.loads(out.stdout or "null") or []
    explained = differing = repeats = 0
    repeat_ms = 0.0
    for c in classes:
        text = c["text"].strip().rstrip(";")
        hashes = []
        for arm in ARMS:
            r = psql("".join(f"SET {k} = {v};" for k, v in arm) + f"EXPLAIN (FORMAT JSON) {text};\n")
            if r.returncode != 0 or "[" not in r.stdout:
                hashes.append(None)
                continue
            plan = json.loads(r.stdout[r.stdout.index("["):])[0]["Plan"]
            hashes.append(hashlib.md5(shape(plan).encode()).hexdigest())
        if hashes[0] is None:
            continue
        explained += 1
        seen = {hashes[0]}
        for arm, h in zip(ARMS[1:], hashes[1:]):
            if h is None or h == hashes[0]:
                continue
            differing += 1
            if h in seen:
                repeats += 1
                logged = (c["replays"] or {}).get(label(arm)) or {}
                repeat_ms += (logged.get("ms") or 0.0) * (logged.get("replays") or 0)
            seen.add(h)
    print(
        f"classes {explained}: arm plans differing from native {differing}, of which {repeats} repeat an earlier "
        f"arm's plan; replay time logged for the repeats {repeat_ms / 1000:.1f} s"
    )


if __name__ == "__main__":
    main()
