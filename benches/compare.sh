#!/usr/bin/env bash
# Compare vaultstore with its peers on the same mail, in one run:
#   vaultstore import (one owner per mailbox folder) and export,
#   restic backup / restore, borg create -C zstd,3 / extract,
#   and cp -r into one file per message (what many archivers do).
# Prints wall time, MB/s of the workload, the ratio to vaultstore and bytes on disk.
#
# Usage: benches/compare.sh [--corpus PATH] [--size-mb N] [--seed N] [--work DIR]
#   Without --corpus, ../shared/corpus/mkworkload makes the workload (the same
#   message delivered to many mailboxes, real attachments).
# Installs nothing: it says how to get restic and borg when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=""; size_mb=256; seed=7; work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus="$2"; shift 2;;
    --size-mb) size_mb="$2"; shift 2;;
    --seed) seed="$2"; shift 2;;
    --work) work="$2"; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
work="${work:-$(mktemp -d)}"
mkdir -p "$work"
trap 'rm -rf "$work"/store "$work"/restic "$work"/borg "$work"/cp "$work"/out-*' EXIT

if [ -z "$corpus" ]; then
  [ -x ../shared/corpus/mkworkload ] || { echo "no ../shared/corpus/mkworkload; pass --corpus PATH" >&2; exit 2; }
  corpus="$work/workload"
  rm -rf "$corpus"
  ../shared/corpus/mkworkload --src ../shared/corpus/dev --out "$corpus" --size-mb "$size_mb" --seed "$seed" >/dev/null
  rm -f "$corpus/MANIFEST.json.bak"
fi
manifest=""
[ -f "$corpus/MANIFEST.json" ] && manifest="$(cat "$corpus/MANIFEST.json")" && mv "$corpus/MANIFEST.json" "$work/MANIFEST.json"

cargo build --release --quiet
vs="$PWD/target/release/vaultstore"
bytes=$(du -sb "$corpus" | cut -f1)

now() { date +%s.%N; }
measure() { # name, command...: prints seconds
  local t0 t1; t0=$(now); "${@:2}" >/dev/null 2>&1 || { echo "FAILED: $1" >&2; return 1; }; t1=$(now)
  python3 -c "print($t1 - $t0)"
}
sync_drop() { sync; }

results=()
add() { results+=("$1|$2|$3"); } # name|seconds|bytes-on-disk

rm -rf "$work/store"
"$vs" init --store "$work/store" >/dev/null
sync_drop
t=$(measure "vaultstore import" "$vs" import --store "$work/store" --owner-from-folder "$corpus" --json)
add "vaultstore import" "$t" "$(du -sb "$work/store" | cut -f1)"

rm -rf "$work/cp"; sync_drop
t=$(measure "cp -r" cp -r "$corpus" "$work/cp")
sync
add "cp -r (one file per message)" "$t" "$(du -sb "$work/cp" | cut -f1)"

if command -v borg >/dev/null; then
  export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
  rm -rf "$work/borg"; borg init -e none "$work/borg" >/dev/null 2>&1
  t=$(measure "borg create" borg create --compression zstd,3 "$work/borg::a" "$corpus")
  add "borg create -C zstd,3" "$t" "$(du -sb "$work/borg" | cut -f1)"
else
  echo "borg not found: install it with 'apt-get install borgbackup' to compare" >&2
fi
if command -v restic >/dev/null; then
  export RESTIC_PASSWORD=compare
  rm -rf "$work/restic"; restic init --repo "$work/restic" >/dev/null 2>&1
  t=$(measure "restic backup" restic --repo "$work/restic" backup "$corpus")
  add "restic backup" "$t" "$(du -sb "$work/restic" | cut -f1)"
else
  echo "restic not found: install it with 'apt-get install restic' to compare" >&2
fi

# Reading everything back.
rm -rf "$work/out-vs"; sync_drop
t=$(measure "vaultstore export" "$vs" export --store "$work/store" --all-owners --to "$work/out-vs")
add "vaultstore export (read back)" "$t" "-"
if command -v borg >/dev/null; then
  rm -rf "$work/out-borg"; mkdir -p "$work/out-borg"; sync_drop
  t=$(cd "$work/out-borg" && measure "borg extract" borg extract "$work/borg::a")
  add "borg extract" "$t" "-"
fi
if command -v restic >/dev/null; then
  rm -rf "$work/out-restic"; sync_drop
  t=$(measure "restic restore" restic --repo "$work/restic" restore latest --target "$work/out-restic")
  add "restic restore" "$t" "-"
fi

echo
echo "workload: $corpus ($bytes bytes${manifest:+; $manifest})"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
printf "%-32s %10s %10s %12s %14s\n" "tool" "seconds" "MB/s" "vs import" "bytes on disk"
base=""
for r in "${results[@]}"; do
  IFS='|' read -r name secs disk <<<"$r"
  [ -z "$base" ] && base="$secs"
  mbs=$(python3 -c "print($bytes / 1e6 / $secs)")
  ratio=$(python3 -c "print($secs / $base)")
  printf "%-32s %10.2f %10.1f %11.2fx %14s\n" "$name" "$secs" "$mbs" "$ratio" "$disk"
done
