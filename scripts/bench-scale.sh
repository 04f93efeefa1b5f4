#!/usr/bin/env bash
# The million-file measurement (issue 10, part 8), reproducible in one run:
#   1. `cargo bench --bench scale -- FILES DIR`: builds (once) a local
#      volume of FILES one-chunk files straight through the engine, then
#      prints open time, heap and RSS per inode, store calls of a `stat` of
#      every inode, bytes of a 10-file commit and of the checkpoint after
#      it, and the longest `stat` during a checkpoint and a compaction.
#   2. The real daemon on the same volume: `sealedfs mount` until it
#      returns (FUSE ready), daemon RSS after it, `ls -lR` of the whole tree
#      and the daemon's RSS after that.
# Usage: scripts/bench-scale.sh [FILES] (default 1000000). Environment:
#   SCALE_DIR   where the volume lives (default /var/tmp/sealedfs-scale-FILES;
#               kept, so a second run skips the generation)
#   BENCH_SKIP_BUILD=1  do not build (use the existing release binaries)
# No assertions: this prints numbers. Needs /dev/fuse.
set -euo pipefail
SCRIPT_NAME=bench-scale
. "$(dirname "$0")/lib.sh"

FILES=${1:-1000000}
DIR=${SCALE_DIR:-/var/tmp/sealedfs-scale-$FILES}
TARGET=${CARGO_TARGET_DIR:-$SEALEDFS_ROOT/target}
SFS=$TARGET/release/sealedfs

cd "$SEALEDFS_ROOT"
if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
    log "cargo build --release"
    cargo build --release --quiet --bin sealedfs --bench scale || die "build failed"
fi
cargo bench --quiet --bench scale -- "$FILES" "$DIR" | grep -v '^$'

work=$(mktemp -d "${TMPDIR:-/tmp}/sealedfs-scale.XXXXXX")
pass=$work/pass
mnt=$work/mnt
mkdir "$mnt"
printf '%s' 'sealedfs bench passphrase' >"$pass"
pid=
cleanup() {
    if is_mounted "$mnt"; then
        "$SFS" unmount "$mnt" >/dev/null 2>&1 || force_unmount "$mnt"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

t0=$(now)
SEALEDFS_LOG_FILE=$work/log "$SFS" mount "$DIR" "$mnt" --passphrase-file "$pass" --cache-size 16M ||
    die "mount failed: $(tail -3 "$work/log" 2>/dev/null)"
t1=$(now)
for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "mount $DIR $mnt"; then
        pid=${p#/proc/}
        break
    fi
done
[[ -n $pid ]] || die "daemon not found"
rss_mount=$(rss_mib "$pid")
t2=$(now)
entries=$(ls -lR "$mnt" | wc -l)
t3=$(now)
rss_ls=$(rss_mib "$pid")
inodes=$((FILES + FILES / 1000 + 1))
echo "| daemon (sealedfs mount, --cache-size 16M) | value |"
echo "|---|---|"
printf '| mount until ready | %.2f s |\n' "$(echo "$t1 - $t0" | bc)"
echo "| daemon RSS after mount | $rss_mount MiB |"
printf '| ls -lR (%s lines) | %.1f s |\n' "$entries" "$(echo "$t3 - $t2" | bc)"
echo "| daemon RSS after ls -lR | $rss_ls MiB ($((rss_ls * 1048576 / inodes)) B per inode, all included) |"
