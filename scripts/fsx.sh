#!/usr/bin/env bash
# Run fsx (crates.io fsx 0.3.2) on a file in a fresh sealedfs mount: several
# fixed seeds, FSX_OPS operations each, with pread/pwrite, mmap reads and
# writes, msync(MS_INVALIDATE), ftruncate, fsync, fdatasync, posix_fallocate,
# hole punching, sendfile, posix_fadvise, copy_file_range and close/reopen.
# Every read is checked against fsx's model of the file. Stops at the first
# failing seed and prints the tail of fsx's output (the last operations,
# then fsx's own dump of its recent-operations log on a miscompare).
#
# In the sealedfs modes (local and --s3), the final file of every seed is checksummed, the
# volume is unmounted and mounted again, and the checksums must match.
#
#   scripts/fsx.sh                  fresh local volume
#   scripts/fsx.sh --s3             fresh volume on the S3 test server (moto): a random
#                                   prefix in SEALEDFS_TEST_S3_BUCKET at
#                                   SEALEDFS_TEST_S3_ENDPOINT (moto is started here when
#                                   that is unset)
#   scripts/fsx.sh --dir PATH       an existing directory (tmpfs, ext4, ...)
#
# Environment: FSX_OPS (operations per seed, default 100000),
#   FSX_SEEDS (default "1 2 3 4"), FSX_TIMEOUT (seconds per seed, default 1200),
#   FSX_MSYNC_SEEDS (seeds that msync(MS_SYNC) after every mmap write;
#   default the last seed; FSX_MSYNC=1: all seeds), FSX_MSYNC_OPS (operations
#   for those seeds, default the smaller of FSX_OPS and 30000: every msync is a
#   store commit, so such a seed runs about 4x slower per operation),
#   SEALEDFS_BIN, SEALEDFS_TEST_LOGS (fsx output lands in fsx-SEED.log there).
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="fsx"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

mode=sealedfs dir='' keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --dir)
        mode=dir
        dir=${2:?--dir needs a path}
        shift
        ;;
    --s3) mode=s3 ;;
    --keep) keep=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

ops=${FSX_OPS:-100000}
read -r -a seeds <<<"${FSX_SEEDS:-1 2 3 4}"
[[ $ops =~ ^[1-9][0-9]*$ ]] || die "FSX_OPS must be a positive number, not '$ops'"
[[ ${#seeds[@]} -gt 0 ]] || die "FSX_SEEDS is empty"
msync_ops=${FSX_MSYNC_OPS:-$((ops < 30000 ? ops : 30000))}
[[ $msync_ops =~ ^[1-9][0-9]*$ ]] || die "FSX_MSYNC_OPS must be a positive number, not '$msync_ops'"

need_tool fsx "$FSX_VERSION"
case $mode in
sealedfs | s3)
    need_tool fusermount3
    need_sealedfs
    ;;
dir) [[ -d $dir && -w $dir ]] || die "--dir $dir: not a writable directory" ;;
esac

work=$(mktemp -d /tmp/sealedfs-fsx.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt" "$SEALEDFS_TEST_LOGS"
daemon_log=$work/daemon.log
mounted_here=0

cleanup() {
    local rc=$?
    cd /
    if [[ $mounted_here == 1 ]] && is_mounted "$mnt"; then
        sfs_unmount "$mnt" >/dev/null 2>&1 || force_unmount "$mnt" || true
    fi
    [[ $mode == s3 ]] && s3_server_stop "$work/s3"
    if [[ $keep == 1 ]]; then
        log "kept $work"
    else
        safe_rm "$work" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

vault=$work/vault
mount_volume() {
    if ! sfs_mount "$vault" "$mnt" "$daemon_log" >"$work/mount.log" 2>&1; then
        cat "$work/mount.log" >&2
        show_tail "$daemon_log"
        die "sealedfs mount failed"
    fi
    mounted_here=1
}

unmount_volume() {
    if ! sfs_unmount "$mnt" >"$work/unmount.log" 2>&1; then
        cat "$work/unmount.log" >&2
        show_tail "$daemon_log"
        die "sealedfs unmount failed"
    fi
    mounted_here=0
}

case $mode in
sealedfs | s3)
    if [[ $mode == s3 ]]; then
        s3_test_volume "$work/s3" fsx
        vault=$S3_VOLUME
    fi
    sfs_init "$vault" >"$work/init.log" 2>&1 || {
        cat "$work/init.log" >&2
        die "sealedfs init failed"
    }
    mount_volume
    target=$mnt
    what="a fresh sealedfs mount"
    [[ $mode == s3 ]] && what="a fresh sealedfs mount of $vault at $AWS_ENDPOINT_URL"
    ;;
dir)
    target=$(mktemp -d "$(cd "$dir" && pwd -P)/fsx.XXXXXX")
    what="directory $dir"
    ;;
esac

# Operation weights (fsx's defaults are read/write/mapread/mapwrite 10,
# truncate 10, the rest 0). A 1 MiB file with operations up to 128 KiB
# crosses sealedfs's 64 KiB chunks and 4 KiB pages at unaligned offsets.
# fsync and fdatasync are rare (about 1 op in 300, still ~300 per seed):
# each one is a commit to the store, several disk fsyncs on a local volume.
#
# A mapwrite is followed by msync(MS_SYNC) only for the seeds in
# FSX_MSYNC_SEEDS (default: the last seed; FSX_MSYNC=1: all seeds). On a
# FUSE mount that msync is an fsync, a store commit for one op in six,
# which makes such a seed about 2.5x slower. Without it (fsx's
# nomsyncafterwrite) dirty pages reach sealedfs by writeback, and the
# checksums after unmount and mount check they arrived.
msync_seeds=${FSX_MSYNC_SEEDS-${seeds[-1]}}
[[ ${FSX_MSYNC:-0} == 1 ]] && msync_seeds="${seeds[*]}"
write_config() { # write_config FILE NOMSYNCAFTERWRITE
    cat >"$1" <<EOF
flen = 1048576
nomsyncafterwrite = $2
nosizechecks = false

[opsize]
max = 131072
min = 0
align = 1

[weights]
close_open = 2
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 4
fsync = 0.1
fdatasync = 0.1
posix_fallocate = 3
punch_hole = 3
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
EOF
}
write_config "$SEALEDFS_TEST_LOGS/fsx.toml" true
write_config "$SEALEDFS_TEST_LOGS/fsx-msync.toml" false

log "fsx $FSX_VERSION on $what: seeds ${seeds[*]}, $ops operations each ($msync_ops with msync);" \
    "msync after mmap writes for seeds: ${msync_seeds:-none}"
declare -A sums=()
total_start=$SECONDS
for seed in "${seeds[@]}"; do
    file=$target/fsx-$seed.dat
    artifacts=$work/artifacts-$seed
    out=$SEALEDFS_TEST_LOGS/fsx-$seed.log
    mkdir -p "$artifacts"
    config=$SEALEDFS_TEST_LOGS/fsx.toml
    n=$ops
    if [[ " $msync_seeds " == *" $seed "* ]]; then
        config=$SEALEDFS_TEST_LOGS/fsx-msync.toml
        n=$msync_ops
    fi
    start=$SECONDS
    set +e
    timeout --kill-after=30 "${FSX_TIMEOUT:-1200}" \
        fsx -v -f "$config" -N "$n" -S "$seed" -P "$artifacts" "$file" >"$out" 2>&1
    status=$?
    set -e
    elapsed=$((SECONDS - start))
    if [[ $status != 0 ]] || ! grep -q 'All operations completed A-OK!' "$out"; then
        cp "$artifacts"/* "$SEALEDFS_TEST_LOGS/" 2>/dev/null || true
        show_tail "$out" 60
        [[ $mode != dir ]] && show_tail "$daemon_log"
        [[ $status == 124 || $status == 137 ]] && die "seed $seed timed out after ${elapsed}s"
        die "seed $seed failed (exit $status) after ${elapsed}s;" \
            "replay: fsx -f $config -N $n -S $seed FILE"
    fi
    echo "fsx seed $seed: $n operations OK in ${elapsed}s ($(basename "$config"))"
    # -v logs every operation (so a panic shows the ones before it); keep
    # only the end of a good run's log.
    tail -n 20 "$out" >"$out.tail" && mv "$out.tail" "$out"
    if [[ $mode != dir ]]; then
        sums[$seed]=$(timeout --kill-after=5 300 sha256sum "$file" | cut -d' ' -f1) ||
            die "cannot read $file to checksum it"
    else
        rm -f "$file"
    fi
done

if [[ $mode != dir ]]; then
    # What fsx left must survive unmount + mount unchanged.
    cd /
    unmount_volume
    mount_volume
    for seed in "${seeds[@]}"; do
        got=$(timeout --kill-after=5 300 sha256sum "$mnt/fsx-$seed.dat" | cut -d' ' -f1) ||
            die "cannot read fsx-$seed.dat after unmount and mount"
        [[ $got == "${sums[$seed]}" ]] ||
            die "fsx-$seed.dat changed across unmount/mount (sha256 ${sums[$seed]} before, $got after)"
    done
    unmount_volume
    echo "fsx files unchanged after unmount and mount"
else
    rmdir "$target" 2>/dev/null || true
fi
echo "fsx: seeds ${seeds[*]} ($ops operations each, $msync_ops for msync seeds ${msync_seeds:-none}) OK in $((SECONDS - total_start))s"
