#!/usr/bin/env python3
"""Seed corpora for scripts/scale-bench.sh (docs/scale-bench.md), generated in seconds.

Texts are short synthetic "documents": 24 words drawn from a fixed vocabulary of 4,096
pronounceable pseudo-words with a seeded PRNG, so two distinct texts share no 5-word shingle in
practice (they are neither exact nor near duplicates of each other). Everything is deterministic
for a given --seed.

  dups ROWS OUT.parquet PLANTED.tsv [--dup-fraction 0.02] [--row-group 1000]
      ROWS seed rows (`id`, `text`); a fraction of them (default 2%) are planted exact duplicates:
      their text is a copy of an earlier, non-planted row's text. PLANTED.tsv lists
      `planted_id<TAB>original_id`, one line per planted row: dedup must remove exactly those
      ids (the first row of a duplicate cluster survives) and nothing else.
  files FILES ROWS_PER_FILE DIR [--row-group 1000]
      FILES Parquet files of ROWS_PER_FILE rows each (part-00000.parquet ...), row groups of
      1,000 rows. Every file has its own ids; the texts are the same in every file (the planning
      bench reads footers only; this keeps 30M rows to about a minute of generation).
  jsonl BYTES OUT.jsonl
      JSONL lines `{"id": ..., "text": ...}` until the file reaches BYTES bytes.
"""

import argparse
import os
import random
import shutil
import sys

import pyarrow as pa
import pyarrow.parquet as pq

WORDS_PER_TEXT = 24
SYLLABLES = [c + v for c in "bdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(rng):
    """4,096 distinct pseudo-words of 2-4 syllables."""
    words = set()
    while len(words) < 4096:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def texts(rng, vocab, n):
    choices = rng.choices
    return [" ".join(choices(vocab, k=WORDS_PER_TEXT)) for _ in range(n)]


def cmd_dups(a):
    rng = random.Random(a.seed)
    vocab = vocabulary(rng)
    n = a.rows
    text = texts(rng, vocab, n)
    planted_n = int(round(n * a.dup_fraction))
    # Planted rows are spread over the whole corpus (never in the first 1%, so each has an
    # earlier original), each copying a random earlier row that is not itself planted.
    lo = max(1, n // 100)
    planted = sorted(rng.sample(range(lo, n), planted_n)) if planted_n else []
    planted_set = set(planted)
    ids = [f"s{i:09d}" for i in range(n)]
    with open(a.planted, "w") as out:
        for i in planted:
            j = rng.randrange(0, i)
            while j in planted_set:
                j = rng.randrange(0, i)
            text[i] = text[j]
            out.write(f"{ids[i]}\t{ids[j]}\n")
    table = pa.table({"id": ids, "text": text})
    pq.write_table(table, a.out, row_group_size=a.row_group)
    print(f"{n} rows, {planted_n} planted duplicates -> {a.out}", file=sys.stderr)


def cmd_files(a):
    rng = random.Random(a.seed)
    vocab = vocabulary(rng)
    os.makedirs(a.dir, exist_ok=True)
    text = pa.array(texts(rng, vocab, a.rows_per_file))
    for f in range(a.files):
        ids = pa.array([f"f{f:05d}-{i:07d}" for i in range(a.rows_per_file)])
        path = os.path.join(a.dir, f"part-{f:05d}.parquet")
        pq.write_table(pa.table({"id": ids, "text": text}), path, row_group_size=a.row_group)
    print(f"{a.files} files x {a.rows_per_file} rows -> {a.dir}", file=sys.stderr)


def cmd_jsonl(a):
    rng = random.Random(a.seed)
    vocab = vocabulary(rng)
    pool = texts(rng, vocab, 65536)
    written = 0
    i = 0
    batch = 100_000
    with open(a.out, "w") as out:
        while written < a.bytes:
            chunk = "".join(
                f'{{"id": "j{k:010d}", "text": "{pool[k & 65535]}"}}\n' for k in range(i, i + batch)
            )
            out.write(chunk)
            written += len(chunk)
            i += batch
    print(f"{i} lines, {written} bytes -> {a.out}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=15)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dups")
    d.add_argument("rows", type=int)
    d.add_argument("out")
    d.add_argument("planted")
    d.add_argument("--dup-fraction", type=float, default=0.02)
    d.add_argument("--row-group", type=int, default=1000)
    f = sub.add_parser("files")
    f.add_argument("files", type=int)
    f.add_argument("rows_per_file", type=int)
    f.add_argument("dir")
    f.add_argument("--row-group", type=int, default=1000)
    j = sub.add_parser("jsonl")
    j.add_argument("bytes", type=int)
    j.add_argument("out")
    a = p.parse_args()
    {"dups": cmd_dups, "files": cmd_files, "jsonl": cmd_jsonl}[a.cmd](a)


if __name__ == "__main__":
    main()
