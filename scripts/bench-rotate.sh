#!/usr/bin/env bash
# Key rotation cost, on the local store and on the S3 test server: how fast
# `sealedfs key rotate` re-encrypts a volume, unmounted and while mounted,
# and what a rotation running in the daemon does to a cold sequential read
# of the same volume at the same time. Reports MiB/s and the read's ratio
# (read during rotation / read alone). Nothing here asserts on times.
#
# Environment:
#   ROTATE_SIZE_MB    volume data on the local store (default 1024)
#   ROTATE_S3_MB      volume data on S3 (default 256; 0 skips S3)
#   BENCH_TMPDIR      where the volumes live (default /var/tmp)
#
# Needs root (FUSE mounts, drop_caches) and target/release/sealedfs (built
# if missing). The S3 half starts moto on 127.0.0.1 (scripts/s3-server.sh).
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="bench-rotate"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$SEALEDFS_ROOT"
need_root "mounts and drop_caches"

size=${ROTATE_SIZE_MB:-1024}
s3_size=${ROTATE_S3_MB:-256}
cargo build --release --quiet
SEALEDFS_BIN=$PWD/target/release/sealedfs
export SEALEDFS_BIN
work=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sealedfs-rotate.XXXXXX")
s3_state=$work/s3
cleanup() {
    force_unmount "$work/mnt" 2>/dev/null || true
    s3_server_stop "$s3_state" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export SEALEDFS_PASSPHRASE=$SEALEDFS_TEST_PASSPHRASE
mkdir -p "$work/mnt"

# secs CMD...: wall seconds of CMD, to the millisecond.
secs() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.3f'
}

mibs() { echo "$1 / $2" | bc -l | xargs printf '%.0f'; }

# fresh URL: a new mount of URL with nothing cached (the daemon's cache
# and the kernel's).
fresh() {
    sfs_unmount "$work/mnt"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    sfs_mount "$1" "$work/mnt" "$work/mount.log"
}

# measure LABEL URL MB: one volume of MB, rotated unmounted, then again
# while mounted alone, then a third time while a cold read runs.
measure() {
    local label=$1 url=$2 mb=$3 t_off t_on t_read_alone t_read_during t_rot_during
    sfs_init "$url" >/dev/null 2>&1
    sfs_mount "$url" "$work/mnt" "$work/mount.log"
    dd if=/dev/urandom of="$work/mnt/data" bs=1M count="$mb" status=none conv=fsync
    sfs_unmount "$work/mnt"
    t_off=$(secs "$SEALEDFS_BIN" key rotate "$url")
    sfs_mount "$url" "$work/mnt" "$work/mount.log"
    t_on=$(secs "$SEALEDFS_BIN" key rotate "$url")
    fresh "$url"
    t_read_alone=$(secs dd if="$work/mnt/data" of=/dev/null bs=1M status=none)
    fresh "$url"
    local t0
    t0=$(date +%s.%N)
    "$SEALEDFS_BIN" key rotate "$url" >/dev/null &
    local rot=$!
    t_read_during=$(secs dd if="$work/mnt/data" of=/dev/null bs=1M status=none)
    wait "$rot"
    t_rot_during=$(echo "$(date +%s.%N) - $t0" | bc -l | xargs printf '%.3f')
    sfs_unmount "$work/mnt"
    printf '%-6s %6s MiB | rotate unmounted %7.2f s %5s MiB/s | mounted %7.2f s %5s MiB/s | ' \
        "$label" "$mb" "$t_off" "$(mibs "$mb" "$t_off")" "$t_on" "$(mibs "$mb" "$t_on")"
    printf 'cold read alone %5s MiB/s, during a rotation %5s MiB/s (%.2fx; rotation took %.2f s)\n' \
        "$(mibs "$mb" "$t_read_alone")" "$(mibs "$mb" "$t_read_during")" \
        "$(echo "$t_read_alone / $t_read_during" | bc -l)" "$t_rot_during"
}

measure local "$work/vol" "$size"
if [[ $s3_size -gt 0 ]]; then
    s3_test_volume "$s3_state" rotate 2>/dev/null
    measure s3 "$S3_VOLUME" "$s3_size"
fi
