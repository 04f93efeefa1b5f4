#!/usr/bin/env bash
# SQLite commit rate: single-row transactions, each one commit with fsync,
# as an EHR's own database does them; reported as transactions per second
# side by side in one run, with ratios. Nothing here asserts on speed.
#
# Workloads (python3's sqlite3, one connection, autocommit INSERT of a
# 100-byte row into a table with an integer key):
#   wal     journal_mode=WAL, synchronous=FULL (the WAL is fsynced per commit)
#   delete  journal_mode=DELETE, synchronous=EXTRA (rollback journal created,
#           fsynced, the database fsynced, the journal deleted and its
#           directory fsynced: four durable steps per commit)
# Each runs BENCH_SQLITE_SECS seconds (default 10) after 20 warm-up commits.
#
# Systems (BENCH_SQLITE_SYSTEMS, default all):
#   ext4         a plain directory on BENCH_TMPDIR (default /var/tmp)
#   sealedfs     sealedfs over a local directory store there
#   gocryptfs    gocryptfs there (if installed)
#   sealedfs-s3  sealedfs over the S3 test server (moto, started here unless
#                SEALEDFS_TEST_S3_ENDPOINT names one)
#   put-4k       not a filesystem: sequential 4 KiB create-only PUTs to that
#                server with one keep-alive boto3 client, per second (the
#                ceiling for one durable commit per PUT)
# Ratios: sealedfs / gocryptfs (local), sealedfs-s3 / put-4k (S3).
#
# Environment: BENCH_SQLITE_SECS, BENCH_SQLITE_SYSTEMS, BENCH_TMPDIR,
# SEALEDFS_BIN (default: the release build in $CARGO_TARGET_DIR or target/;
# BENCH_SKIP_BUILD=1 skips `cargo build --release`), BENCH_SEALEDFS_OPTS
# (extra mount options, e.g. --no-audit). Output: the table on stdout and
# a markdown copy in target/bench/sqlite.md.

set -uo pipefail

SCRIPT_NAME="bench-sqlite"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

SECS=${BENCH_SQLITE_SECS:-10}
read -r -a SYSTEMS <<<"${BENCH_SQLITE_SYSTEMS:-ext4 sealedfs gocryptfs sealedfs-s3 put-4k}"
TARGET=${CARGO_TARGET_DIR:-$SEALEDFS_ROOT/target}
SFS=${BENCH_SQLITE_BIN:-$TARGET/release/sealedfs}
OUT=$SEALEDFS_ROOT/target/bench
PASS="sealedfs bench passphrase"
mkdir -p "$OUT"

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release"
    (cd "$SEALEDFS_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[[ -x $SFS ]] || die "missing $SFS"
need_tool python3

WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sealedfs-sqlite.XXXXXX") || die "mktemp failed"
MNT=$WORK/mnt
MOUNTED=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cd /
    if [[ -n $MOUNTED ]] && is_mounted "$MOUNTED"; then
        timeout 120 "$SFS" unmount "$MOUNTED" >/dev/null 2>&1 ||
            timeout 60 fusermount3 -u "$MOUNTED" 2>/dev/null
        is_mounted "$MOUNTED" && force_unmount "$MOUNTED"
    fi
    [[ -n ${S3_STARTED:-} ]] && s3_server_stop "$WORK/s3"
    safe_rm "$WORK" || log "warning: left $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# commits DIR MODE SYNC: transactions per second of the workload in DIR.
commits() {
    python3 - "$1" "$2" "$3" "$SECS" <<'EOF'
import os, sqlite3, sys, time
d, mode, sync, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
con = sqlite3.connect(os.path.join(d, f"bench-{mode}.db"), isolation_level=None)
con.execute(f"PRAGMA journal_mode={mode}")
con.execute(f"PRAGMA synchronous={sync}")
con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
row = os.urandom(100)
for _ in range(20):
    con.execute("INSERT INTO t (v) VALUES (?)", (row,))
n, start = 0, time.perf_counter()
while time.perf_counter() - start < secs:
    con.execute("INSERT INTO t (v) VALUES (?)", (row,))
    n += 1
dt = time.perf_counter() - start
assert con.execute("SELECT count(*) FROM t").fetchone()[0] == n + 20
con.close()
print(f"{n / dt:.1f}")
EOF
}

# put_rate: sequential 4 KiB create-only PUTs per second to the S3 server.
put_rate() {
    python3 - "$SECS" <<'EOF'
import os, sys, time, boto3
secs = float(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=os.environ["SEALEDFS_TEST_S3_ENDPOINT"])
bucket, body = os.environ["SEALEDFS_TEST_S3_BUCKET"], os.urandom(4096)
prefix = f"bench-put-{os.getpid()}/"
for i in range(20):
    s3.put_object(Bucket=bucket, Key=f"{prefix}warm{i}", Body=body, IfNoneMatch="*")
n, start = 0, time.perf_counter()
while time.perf_counter() - start < secs:
    s3.put_object(Bucket=bucket, Key=f"{prefix}{n}", Body=body, IfNoneMatch="*")
    n += 1
print(f"{n / (time.perf_counter() - start):.1f}")
EOF
}

# on SYS: prepares SYS and mounts it on $MNT (or points $MNT at a plain dir).
on() {
    local sys=$1 store=$WORK/store-$1
    rm -rf "$MNT" && mkdir -p "$MNT"
    case $sys in
    ext4) return 0 ;;
    sealedfs | sealedfs-s3)
        if [[ $sys == sealedfs-s3 ]]; then
            s3_test_volume "$WORK/s3" sqlite-bench
            store=$S3_VOLUME
        fi
        SEALEDFS_PASSPHRASE=$PASS "$SFS" init "$store" --insecure-fast-kdf >/dev/null || return 1
        # shellcheck disable=SC2086 # a list of options
        SEALEDFS_PASSPHRASE=$PASS SEALEDFS_LOG_FILE=$OUT/sqlite-$sys.log \
            "$SFS" mount "$store" "$MNT" ${BENCH_SEALEDFS_OPTS:-} || return 1
        ;;
    gocryptfs)
        command -v gocryptfs >/dev/null || return 1
        printf '%s\n' "$PASS" >"$WORK/gocryptfs.pass"
        mkdir -p "$store" && gocryptfs -init -q -passfile "$WORK/gocryptfs.pass" "$store" || return 1
        gocryptfs -q -passfile "$WORK/gocryptfs.pass" "$store" "$MNT" || return 1
        ;;
    esac
    MOUNTED=$MNT
}

off() {
    local sys=$1
    [[ -z $MOUNTED ]] && return 0
    case $sys in
    sealedfs*) timeout 300 "$SFS" unmount "$MNT" ;;
    *) fusermount3 -u "$MNT" ;;
    esac
    MOUNTED=''
}

if [[ " ${SYSTEMS[*]} " == *" sealedfs-s3 "* || " ${SYSTEMS[*]} " == *" put-4k "* ]] &&
    [[ -z ${SEALEDFS_TEST_S3_ENDPOINT:-} ]]; then
    s3_server_start "$WORK/s3" || die "cannot start the S3 test server"
    S3_STARTED=1
    # shellcheck disable=SC1091 # written by s3_server_start
    set -a && . "$WORK/s3/env" && set +a
fi
declare -A R=()
for sys in "${SYSTEMS[@]}"; do
    if [[ $sys == put-4k ]]; then
        R[$sys,wal]=$(put_rate) || R[$sys,wal]=fail
        R[$sys,delete]=${R[$sys,wal]}
        log "$sys: ${R[$sys,wal]} PUT/s"
        continue
    fi
    if ! on "$sys"; then
        log "$sys: could not be set up; skipped"
        R[$sys,wal]=skip R[$sys,delete]=skip
        off "$sys"
        continue
    fi
    for w in "wal FULL" "delete EXTRA"; do
        read -r mode sync <<<"$w"
        R[$sys,$mode]=$(commits "$MNT" "$mode" "$sync") || R[$sys,$mode]=fail
        log "$sys: $mode/$sync ${R[$sys,$mode]} tx/s"
    done
    off "$sys"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
{
    echo "| system | WAL, synchronous=FULL (tx/s) | DELETE, synchronous=EXTRA (tx/s) |"
    echo "|---|---|---|"
    for sys in "${SYSTEMS[@]}"; do
        echo "| $sys | ${R[$sys,wal]:-} | ${R[$sys,delete]:-} |"
    done
    if [[ -n ${R[sealedfs,wal]:-} && -n ${R[gocryptfs,wal]:-} ]]; then
        echo "| sealedfs / gocryptfs | $(ratio "${R[sealedfs,wal]}" "${R[gocryptfs,wal]}") | $(ratio "${R[sealedfs,delete]}" "${R[gocryptfs,delete]}") |"
    fi
    if [[ -n ${R[sealedfs-s3,wal]:-} && -n ${R[put-4k,wal]:-} ]]; then
        echo "| sealedfs-s3 / put-4k | $(ratio "${R[sealedfs-s3,wal]}" "${R[put-4k,wal]}") | $(ratio "${R[sealedfs-s3,delete]}" "${R[put-4k,wal]}") |"
    fi
    echo
    echo "$SECS s per workload; $(nproc) CPUs; store dir $(findmnt -no FSTYPE -T "$WORK")."
} | tee "$OUT/sqlite.md"
