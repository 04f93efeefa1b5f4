#!/usr/bin/env bash
# Run pjdfstest (crates.io pjdfstest 0.2.2) against a fresh sealedfs mount and
# fail when fewer cases pass than the minimum in tests/pjdfstest.expected.
#
#   scripts/pjdfstest.sh                 fresh local volume, mounted -o allow_other
#   scripts/pjdfstest.sh --s3            fresh volume on the S3 test server (moto), a random
#                                        prefix in SEALEDFS_TEST_S3_BUCKET at
#                                        SEALEDFS_TEST_S3_ENDPOINT (moto is started here
#                                        when that is unset); minimum in tests/pjdfstest-s3.expected
#   scripts/pjdfstest.sh --ext4          the same suite on an ext4 loop image (baseline)
#   scripts/pjdfstest.sh --dir PATH      the same suite in an existing directory
#   scripts/pjdfstest.sh [...] -- PATTERN...   only the cases whose name contains PATTERN
#
# Options: --min N (check against N instead of the file; in every mode),
#          --no-check (report only), --keep (leave the temp dir for inspection).
# Environment: PJDFSTEST_TIMEOUT (seconds, default 1800), SEALEDFS_BIN,
#          SEALEDFS_TEST_LOGS (full output lands in pjdfstest-MODE.log there).
#
# Needs root: pjdfstest switches to the users `nobody` and `tests` (created
# here if missing) and chowns files. It runs from a directory inside the file
# system under test. Those user switches are why the mount needs
# `-o allow_other`: without it FUSE refuses every other user with EACCES.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="pjdfstest"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

mode=sealedfs dir='' min='' check=auto keep=0
patterns=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --ext4) mode=ext4 ;;
    --s3) mode=s3 ;;
    --dir)
        mode=dir
        dir=${2:?--dir needs a path}
        shift
        ;;
    --min)
        min=${2:?--min needs a number}
        check=yes
        shift
        ;;
    --no-check) check=no ;;
    --keep) keep=1 ;;
    --)
        shift
        patterns=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

need_root "pjdfstest switches users and chowns files"
need_tool pjdfstest "$PJDFSTEST_VERSION"
case $mode in
sealedfs | s3)
    need_tool fusermount3
    need_sealedfs
    ;;
ext4) need_tool mkfs.ext4 ;;
dir) [[ -d $dir ]] || die "--dir $dir: not a directory" ;;
esac

if [[ $check == auto ]]; then
    [[ $mode == sealedfs || $mode == s3 ]] && check=yes || check=no
fi
expected_file=$SEALEDFS_ROOT/tests/pjdfstest.expected
[[ $mode == s3 ]] && expected_file=$SEALEDFS_ROOT/tests/pjdfstest-s3.expected
min_from_file=0
if [[ $check == yes && -z $min ]]; then
    min_from_file=1
    [[ -r $expected_file ]] || die "missing $expected_file"
    min=$(grep -Ev '^[[:space:]]*(#|$)' "$expected_file" | head -n1 | tr -d '[:space:]')
fi
if [[ $check == yes && ! $min =~ ^[0-9]+$ ]]; then
    die "minimum pass count '$min' is not a number (from --min or $expected_file)"
fi

# --- the dummy users pjdfstest switches to ---------------------------------
getent group nogroup >/dev/null || groupadd -r nogroup
getent passwd nobody >/dev/null ||
    useradd -r -M -N -g nogroup -d /nonexistent -s /usr/sbin/nologin nobody
getent group tests >/dev/null || groupadd tests
getent passwd tests >/dev/null ||
    useradd -M -N -g tests -d /nonexistent -s /usr/sbin/nologin -c "pjdfstest dummy user" tests

# --- the file system under test --------------------------------------------
work=$(mktemp -d /tmp/sealedfs-pjdfstest.XXXXXX)
chmod 0755 "$work" # the dummy users must reach the mountpoint
mnt=$work/mnt
secondary=$work/secondary # another file system, for the EXDEV cases
mkdir -p "$mnt" "$secondary" "$SEALEDFS_TEST_LOGS"
daemon_log=$work/daemon.log
out=$SEALEDFS_TEST_LOGS/pjdfstest-$mode.log
result_file=$SEALEDFS_TEST_LOGS/pjdfstest-$mode.result
rm -f "$result_file"
mounted_here=0

cleanup() {
    local rc=$?
    cd /
    if [[ $mounted_here == 1 ]] && is_mounted "$mnt"; then
        case $mode in
        sealedfs | s3) sfs_unmount "$mnt" >/dev/null 2>&1 || force_unmount "$mnt" || true ;;
        ext4) umount "$mnt" 2>/dev/null || umount -l "$mnt" || true ;;
        esac
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

case $mode in
sealedfs | s3)
    vault=$work/vault
    if [[ $mode == s3 ]]; then
        s3_test_volume "$work/s3" pjdfstest
        vault=$S3_VOLUME
    fi
    sfs_init "$vault" >"$work/init.log" 2>&1 || {
        cat "$work/init.log" >&2
        die "sealedfs init failed"
    }
    if ! sfs_mount "$vault" "$mnt" "$daemon_log" -o allow_other >"$work/mount.log" 2>&1; then
        cat "$work/mount.log" >&2
        show_tail "$daemon_log"
        die "sealedfs mount failed"
    fi
    mounted_here=1
    target=$mnt
    what="sealedfs mount (-o allow_other) of a fresh local volume"
    [[ $mode == s3 ]] && what="sealedfs mount (-o allow_other) of a fresh S3 volume ($vault at $AWS_ENDPOINT_URL)"
    ;;
ext4)
    truncate -s 512M "$work/ext4.img"
    mkfs.ext4 -q -F "$work/ext4.img"
    mount -o loop "$work/ext4.img" "$mnt"
    mounted_here=1
    target=$mnt
    what="ext4 on a loop image (defaults: $(awk -v p="$mnt" '$2 == p { print $4 }' /proc/mounts))"
    ;;
dir)
    target=$(cd "$dir" && pwd -P)
    what="directory $target"
    ;;
esac

# The dummy users must be able to search the top of the tree.
# (Everything that touches the mount runs under `timeout`: a hung daemon
# must fail the run, not hang it.)
if [[ $mode != dir ]]; then
    timeout --kill-after=5 60 chmod 0755 "$target" || die "chmod of the mount root failed or hung"
fi

# Same settings in every mode so the counts compare. Features: those Linux
# and ext4 have (no chflags, NFSv4 ACLs or st_birthtime on Linux). Remount
# (EROFS) cases stay off: they remount the file system under test read-only.
config=$work/pjdfstest.toml
cat >"$config" <<EOF
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [
    ["nobody", "$(id -gn nobody)"],
    ["tests", "$(id -gn tests)"],
]
EOF

log "running pjdfstest $PJDFSTEST_VERSION on $what"
log "full output: $out"
start=$SECONDS
set +e
# Run from inside the file system under test (env -C), as root.
NO_COLOR=1 timeout --kill-after=30 "${PJDFSTEST_TIMEOUT:-1800}" \
    env -C "$target" pjdfstest -c "$config" -p "$target" -s "$secondary" -- "${patterns[@]}" \
    >"$out" 2>&1
status=$?
set -e
elapsed=$((SECONDS - start))
sed -i -E 's/\x1b\[[0-9;]*m//g' "$out"

summary=$(grep -E '^Summary: ' "$out" | tail -n1 || true)
if [[ -z $summary ]]; then
    show_tail "$out" 30
    [[ $mode == sealedfs || $mode == s3 ]] && show_tail "$daemon_log"
    [[ $status == 124 || $status == 137 ]] && die "pjdfstest timed out after ${elapsed}s"
    die "pjdfstest ended (exit $status) without a summary line"
fi
# "Summary: F failed, S skipped, P passed, E expected failures, T total"
read -r failed skipped passed total < <(sed -E \
    's/^Summary: ([0-9]+) failed, ([0-9]+) skipped, ([0-9]+) passed, [0-9]+ expected failures, ([0-9]+) total.*/\1 \2 \3 \4/' \
    <<<"$summary")
[[ $passed =~ ^[0-9]+$ ]] || die "cannot parse the summary line: $summary"

if [[ $failed -gt 0 ]]; then
    echo "failed cases (first line of each reason):"
    awk '/ FAILED$/ { name = $1; getline reason; sub(/^[ \t]+/, "", reason); printf "  %-60s %s\n", name, reason }' "$out"
fi
printf 'passed=%s failed=%s skipped=%s total=%s seconds=%s mode=%s\n' \
    "$passed" "$failed" "$skipped" "$total" "$elapsed" "$mode" >"$result_file"

unmount_failed=0
if [[ $mode == sealedfs || $mode == s3 ]]; then
    cd /
    if sfs_unmount "$mnt" >"$work/unmount.log" 2>&1; then
        mounted_here=0
    else
        unmount_failed=1
        cat "$work/unmount.log" >&2
        show_tail "$daemon_log"
    fi
    cp "$daemon_log" "$SEALEDFS_TEST_LOGS/pjdfstest-$mode-daemon.log" 2>/dev/null || true
fi

line="pjdfstest on $mode: passed $passed, failed $failed, skipped $skipped of $total in ${elapsed}s"
if [[ $check == yes ]]; then
    if [[ $passed -lt $min ]]; then
        echo "$line"
        die "pjdfstest passed $passed, below the minimum $min ($(basename "$expected_file"))"
    fi
    line+=" (minimum $min)"
    [[ $passed -gt $min && $min_from_file == 1 ]] && line+="; raise tests/$(basename "$expected_file") to $passed"
fi
echo "$line"
[[ $unmount_failed == 0 ]] || die "sealedfs unmount failed after the run"
