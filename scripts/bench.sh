#!/usr/bin/env bash
# Benchmarks sealedfs side by side with other encrypted FUSE filesystems in
# one run on one machine, and reports seconds per operation and the ratio
# peer time / sealedfs time (> 1: sealedfs is faster). Nothing here asserts
# on times; a failed operation is reported as "fail" and the run goes on.
#
# Systems, each storing on the same disk (a temp dir under BENCH_TMPDIR):
#   plain      a plain directory (baseline, no FUSE)
#   sealedfs   target/release/sealedfs, local directory store
#   sealedfs-aes  the same with the FIPS suite (init --cipher aes-256-gcm:
#              AES-256-GCM units, a PBKDF2 keyslot), side by side
#   sealedfs-noaudit  the same mounted with --no-audit: its ratio is the
#              cost of the audit trail (not in the default list)
#   gocryptfs  gocryptfs (Debian package)
#   cryfs      cryfs (Debian package)
#   securefs   securefs (Debian package)
#   rclone     rclone crypt remote over a local directory, `rclone mount
#              --vfs-cache-mode writes` (no network)
# Each keeps its default cipher and options; the volumes are created with
# each tool's default (real) key derivation; mount time is not measured.
#
# Operations, in this order, per system:
#   write      dd a BENCH_SIZE_MB random file (from tmpfs) in, bs=1M, conv=fsync
#   umount-w   unmount after the write (the daemon's remaining flush; for
#              rclone, first waiting for its uploads to the store)
#   read       dd it out to /dev/null after unmount + drop_caches + mount
#   untar      tar -x of the tree (from tmpfs), then sync
#   umount-t   unmount after the untar
#   ls-lR      ls -lRA of the tree after drop_caches + mount (cold; -A as
#              the default tree has a hidden directory)
#   grep-r     grep -rc of a string through the whole tree (after ls-lR)
#   rm-rf      rm -rf of the tree, then sync
# "unmount" = the unmount command plus waiting until the daemon has exited
# (sealedfs unmount commits everything first); plain has none.
# Memory: the daemon's VmHWM (kernel high-water mark, includes whatever the
# mount command did before it forked, e.g. the KDF) and its peak VmRSS
# sampled every 100 ms while it served; the maximum over all mounts, and
# per mount. Per operation: the daemon's CPU time and syscall bytes
# (/proc/PID/stat, /proc/PID/io) and the command's own CPU time.
# Then the same run measures on S3 (scripts/bench-s3.sh has the details):
# the S3 test server itself, sealedfs, rclone crypt and s3fs, each from an
# empty bucket prefix: sequential write until durable, cold and warm
# read, small files created until durable and read cold, untar until
# durable, ls -lRA cold, daemon CPU and RSS; every file checked after a
# remount, and a system that lost data reported.
# docs/BENCHMARKS.md explains the method and holds measured results.
#
# Environment:
#   BENCH_SIZE_MB   size of the sequential file in MiB (default 1024)
#   BENCH_TREE      the tree to untar: a .tar file, or directories separated
#                   by ':' (default: the cargo registry sources and
#                   /usr/include; only directories and regular files are
#                   taken, so every system can hold them)
#   BENCH_GREP      the string grep -r counts (default "unsafe")
#   BENCH_SYSTEMS   which systems, space separated (default all seven)
#   BENCH_TMPDIR    where the volumes live (default /var/tmp: the host disk)
#   BENCH_SEALEDFS_OPTS  extra `sealedfs mount` options, e.g. "--cache-size 64M"
#   BENCH_NO_INSTALL=1  do not apt-get install missing peers
#   BENCH_SKIP_BUILD=1  do not run cargo build --release
#   BENCH_QUICK=1   a short run to iterate on: 128 MiB local and 64 MiB S3
#                   files, the tree of /usr/include only, peers sealedfs
#                   and gocryptfs locally, all four on S3, no SQLite (each
#                   default still yields to its own variable)
#   BENCH_S3=0      skip the S3 half
#   BENCH_S3_SYSTEMS  which S3 systems (default "s3-raw s3-sealedfs
#                   s3-sealedfs-dc s3-rclone s3-s3fs")
#   BENCH_S3_SIZE_MB  the S3 sequential file in MiB (default 256; moto keeps
#                   every object in memory)
#   BENCH_S3_FILES  small files created and read on S3 (default 300, 4 KiB each)
#   BENCH_S3_TREE_FILES  files in the S3 untar tree (default 300)
#   BENCH_SQLITE=0  skip the SQLite commit rates (scripts/bench-sqlite.sh)
# Output: the table on stdout, a markdown copy in target/bench/results.md,
# daemon logs in target/bench/logs/. Needs root (drop_caches, apt-get).
set -uo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="bench"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
[[ $# -eq 0 ]] || die "no arguments expected (see --help)"
need_root "drop_caches, apt-get install"

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    : "${BENCH_SIZE_MB:=128}" "${BENCH_S3_SIZE_MB:=64}" "${BENCH_TREE:=/usr/include}"
    : "${BENCH_SYSTEMS:=sealedfs gocryptfs}" "${BENCH_SQLITE:=0}"
fi
SIZE_MB=${BENCH_SIZE_MB:-1024}
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MB must be a positive number, not '$SIZE_MB'"
CARGO_SRC=${CARGO_HOME:-$HOME/.cargo}/registry/src
TREE=${BENCH_TREE:-$CARGO_SRC:/usr/include}
GREP_FOR=${BENCH_GREP:-unsafe}
read -r -a SYSTEMS <<<"${BENCH_SYSTEMS:-plain sealedfs sealedfs-aes gocryptfs cryfs securefs rclone}"
PASS="sealedfs bench passphrase"
OUT=$SEALEDFS_ROOT/target/bench
LOGS=$OUT/logs
SFS=${CARGO_TARGET_DIR:-$SEALEDFS_ROOT/target}/release/sealedfs
OPS=(write umount-w read untar umount-t ls-lR grep-r rm-rf)

# shellcheck source=scripts/bench-s3.sh
. "$(dirname "$0")/bench-s3.sh"
[[ ${BENCH_S3:-1} == 0 ]] && S3_SYSTEMS=()

# --- peers and build ----------------------------------------------------------

declare -A PKG=([gocryptfs]=gocryptfs [cryfs]=cryfs [securefs]=securefs [rclone]=rclone
    [s3-rclone]=rclone [s3-s3fs]=s3fs)
declare -A SKIP=() # system -> why it is not measured
install_peers() {
    local want=() s
    for s in "${SYSTEMS[@]}" "${S3_SYSTEMS[@]}"; do
        [[ -n ${PKG[$s]:-} ]] && ! command -v "${PKG[$s]}" >/dev/null && want+=("${PKG[$s]}")
    done
    mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u | grep .)
    command -v fusermount3 >/dev/null || want+=(fuse3)
    [[ ${#want[@]} -gt 0 ]] || return 0
    if [[ ${BENCH_NO_INSTALL:-0} == 1 ]]; then
        log "not installing ${want[*]} (BENCH_NO_INSTALL=1)"
        return 0
    fi
    local have=()
    for s in "${want[@]}"; do
        if apt-cache policy "$s" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            have+=("$s")
        else
            log "note: no Debian package '$s' here; skipping it"
        fi
    done
    [[ ${#have[@]} -gt 0 ]] || return 0
    log "apt-get install -y ${have[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${have[@]}" >"$OUT/apt.log" 2>&1 ||
        log "warning: apt-get install failed (see $OUT/apt.log)"
}

mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*
install_peers
need_tool fusermount3
for s in "${SYSTEMS[@]}"; do
    case $s in
    plain | sealedfs | sealedfs-aes | sealedfs-noaudit) ;;
    gocryptfs | cryfs | securefs | rclone)
        command -v "$s" >/dev/null || SKIP[$s]="not installed"
        ;;
    *) die "unknown system '$s' in BENCH_SYSTEMS" ;;
    esac
done
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release"
    (cd "$SEALEDFS_ROOT" && cargo build --release --quiet --bin sealedfs --example s3_raw) ||
        die "cargo build --release failed"
fi
[[ -x $SFS ]] || die "missing $SFS"

# --- work area and cleanup ------------------------------------------------------

WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sealedfs-bench.XXXXXX") || die "mktemp failed"
if [[ -d /dev/shm && -w /dev/shm ]]; then
    SHM=$(mktemp -d /dev/shm/sealedfs-bench.XXXXXX) || die "mktemp failed"
else
    SHM=$WORK/src
    mkdir -p "$SHM"
    log "warning: no tmpfs at /dev/shm; sources are read from $SHM"
fi
MOUNTED=() # "system mountpoint" of live mounts
SAMPLERS=() # pids of the RSS samplers we started
STARTED=()  # pids of daemons started as our children (rclone)

# The script's own stdout and stderr, for the cleanup: a signal may
# arrive while a command's output is redirected to a log.
exec 3>&1 4>&2

cleanup() {
    local rc=$? m sys mnt p
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    cd /
    for p in "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null; done
    for m in "${MOUNTED[@]}"; do
        sys=${m%% *} mnt=${m#* }
        is_mounted "$mnt" || continue
        log "cleanup: unmounting $sys at $mnt"
        if [[ $sys == sealedfs* ]]; then
            timeout 120 "$SFS" unmount "$mnt" >/dev/null 2>&1
        else
            timeout 120 fusermount3 -u "$mnt" 2>/dev/null || timeout 60 umount "$mnt" 2>/dev/null
        fi
        is_mounted "$mnt" && force_unmount "$mnt"
    done
    for p in "${STARTED[@]}"; do
        alive "$p" && kill "$p" 2>/dev/null
    done
    s3_stop
    safe_rm "$WORK" || log "warning: left $WORK"
    safe_rm "$SHM" || log "warning: left $SHM"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- inputs ---------------------------------------------------------------------

log "work dir $WORK ($(findmnt -no SOURCE,FSTYPE -T "$WORK" | tr -s ' ')), sources in $SHM"
log "generating a ${SIZE_MB} MiB random file"
head -c "$((SIZE_MB << 20))" /dev/urandom >"$SHM/random" || die "cannot write $SHM/random"

if [[ $TREE == *.tar ]]; then
    cp "$TREE" "$SHM/tree.tar" || die "cannot copy $TREE"
    TREE_DESC="$TREE"
else
    IFS=: read -r -a tree_dirs <<<"$TREE"
    for d in "${tree_dirs[@]}"; do [[ -d $d ]] || die "BENCH_TREE: $d is not a directory"; done
    # Directories and regular files only (no symlinks or devices: not every
    # peer stores them), with paths relative to /, sorted for a stable order.
    find "${tree_dirs[@]}" \( -type d -o -type f \) -print0 | sed -z 's|^/||' | sort -z >"$SHM/tree.list"
    tar -C / -cf "$SHM/tree.tar" --no-recursion --null -T "$SHM/tree.list" ||
        die "cannot build the tree tarball"
    TREE_DESC="${tree_dirs[*]}"
fi
TREE_FILES=$(tar -tvf "$SHM/tree.tar" | grep -c '^-')
TREE_DIRS=$(tar -tvf "$SHM/tree.tar" | grep -c '^d')
TREE_MB=$(tar -tvf "$SHM/tree.tar" | awk '$1 ~ /^-/ { s += $3 } END { printf "%.0f", s / 1048576 }')
log "tree: $TREE_DESC: $TREE_FILES files, $TREE_DIRS directories, $TREE_MB MiB"

# --- helpers --------------------------------------------------------------------

declare -A T=()     # "system,op" -> seconds, or "fail"
declare -A C=()     # "system,op" -> daemon CPU seconds during op, "total=user+sys"
declare -A IO=()    # "system,op" -> daemon syscall I/O during op, "MiB read/MiB written"
declare -A K=()     # "system,op" -> CPU seconds of the command itself (tar, dd, ...)
declare -A HWM=()   # system -> max VmHWM (KiB)
declare -A PEAK=()  # system -> max sampled VmRSS (KiB)
declare -A PEAKS=() # system -> peak VmRSS per mount, "phase=MiB ..."
declare -A CHECK=() # "system,what" -> a count that must equal plain's
declare -A NOTE=()  # system -> remarks

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# timed SYS OP CMD...: runs CMD, records its wall time (or "fail").
# Also records the daemon's CPU time (user + system) over CMD in C, when
# the daemon is alive before and after.
timed() {
    local sys=$1 op=$2 t0 t1 rc d0 d1 k0 k1 cv iv
    shift 2
    d0=$(proc_snap "$DPID")
    children_cpu >"$WORK/k0"
    t0=$(now)
    "$@" >>"$LOGS/$sys.out" 2>&1
    rc=$?
    t1=$(now)
    children_cpu >"$WORK/k1"
    k0=$(<"$WORK/k0") k1=$(<"$WORK/k1")
    d1=$(proc_snap "$DPID")
    K[$sys,$op]=$(awk -v a="$k0" -v b="$k1" 'BEGIN { printf "%.2f", b - a }')
    if [[ -n $d0 && -n $d1 ]]; then
        read -r cv iv < <(awk -v a="$d0" -v b="$d1" -v hz="$CLK_TCK" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            printf "%.2f=%.2fu+%.2fs %.0f/%.0f\n", (y[1] + y[2] - x[1] - x[2]) / hz,
                (y[1] - x[1]) / hz, (y[2] - x[2]) / hz, (y[3] - x[3]) / 1048576, (y[4] - x[4]) / 1048576 }')
        C[$sys,$op]=$cv IO[$sys,$op]=$iv
    fi
    if [[ $rc -eq 0 ]]; then
        T[$sys,$op]=$(elapsed "$t0" "$t1")
        # (an unmount reaps rclone, our child: its CPU lands in `times`)
        [[ $op == umount-* ]] && unset "K[$sys,$op]"
        log "$sys $op: ${T[$sys,$op]} s${K[$sys,$op]:+, client CPU ${K[$sys,$op]} s}${C[$sys,$op]:+, daemon CPU ${C[$sys,$op]}, daemon I/O ${IO[$sys,$op]} MiB read/written}"
    else
        T[$sys,$op]=fail
        log "$sys $op: FAILED (exit $rc; see $LOGS/$sys.out)"
    fi
    return "$rc"
}

# proc_snap PID: "utime stime rchar wchar" of PID (all threads; clock
# ticks, bytes passed to read- and write-like syscalls, /dev/fuse included).
proc_snap() {
    local st f k v rchar='' wchar=''
    [[ -n $1 ]] || return 0
    { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 0
    read -r -a f <<<"${st##*) }"
    while read -r k v; do
        case $k in
        rchar:) rchar=$v ;;
        wchar:) wchar=$v ;;
        esac
    done 2>/dev/null <"/proc/$1/io"
    [[ -n $rchar && -n $wchar ]] || return 0
    echo "${f[11]} ${f[12]} $rchar $wchar"
}

# children_cpu: user + system seconds of this shell's waited-for children.
# (`times` runs in this shell, not in a $(...) subshell, which has none.)
children_cpu() {
    times >"$WORK/times"
    awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$WORK/times"
}
CLK_TCK=$(getconf CLK_TCK)

# daemon_pid MNT: the FUSE daemon serving MNT: a process with MNT as one of
# its arguments (every peer is started that way) that is not fusermount.
daemon_pid() {
    local mnt=$1 p comm
    for p in /proc/[0-9]*; do
        [[ -r $p/cmdline ]] || continue
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        [[ $comm == fusermount* || $comm == bash || $comm == timeout ]] && continue
        if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$mnt"; then
            printf '%s\n' "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

# sample_rss PID FILE: every 100 ms until PID exits, writes to FILE the
# peak VmRSS seen and the last VmHWM read (KiB).
sample_rss() {
    local pid=$1 file=$2 max=0 hwm=0 k v _
    while alive "$pid"; do
        while read -r k v _; do
            case $k in
            VmHWM:) hwm=$v ;;
            VmRSS:)
                ((v > max)) && max=$v
                break
                ;;
            esac
        done 2>/dev/null <"/proc/$pid/status"
        echo "$max $hwm" >"$file"
        sleep 0.1
    done
}

# alive PID: PID runs (a zombie counts as gone: PID 1 may reap it late).
alive() {
    local st
    { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
    st=${st##*) }
    [[ ${st%% *} != [ZX] ]]
}

# --- the systems ------------------------------------------------------------------
# setup_SYS: create the volume; mount_SYS: mount it on $MNT and return once
# mounted; unmount_SYS: ask it to unmount (the caller waits for the daemon).

setup_plain() { mkdir -p "$MNT"; }
mount_plain() { :; }
unmount_plain() { :; }

# SEALEDFS_BENCH_CIPHER=aes-256-gcm measures the FIPS suite (AES-256-GCM
# units, PBKDF2 keyslot); the default is XChaCha20-Poly1305 with Argon2id.
setup_sealedfs() {
    SEALEDFS_PASSPHRASE=$PASS "$SFS" init "$STORE" --weak-passphrase \
        --cipher "${SEALEDFS_BENCH_CIPHER:-xchacha20-poly1305}"
}
mount_sealedfs() {
    # shellcheck disable=SC2086 # BENCH_SEALEDFS_OPTS is a list of options
    SEALEDFS_PASSPHRASE=$PASS SEALEDFS_LOG_FILE=$LOGS/sealedfs.log "$SFS" mount "$STORE" "$MNT" ${BENCH_SEALEDFS_OPTS:-}
}
unmount_sealedfs() { timeout 600 "$SFS" unmount "$MNT"; }
setup_sealedfs-aes() { SEALEDFS_BENCH_CIPHER=aes-256-gcm setup_sealedfs; }
mount_sealedfs-aes() { mount_sealedfs; }
unmount_sealedfs-aes() { unmount_sealedfs; }
setup_sealedfs-noaudit() { setup_sealedfs; }
mount_sealedfs-noaudit() { BENCH_SEALEDFS_OPTS="${BENCH_SEALEDFS_OPTS:-} --no-audit" mount_sealedfs; }
unmount_sealedfs-noaudit() { unmount_sealedfs; }

setup_gocryptfs() {
    printf '%s\n' "$PASS" >"$WORK/gocryptfs.pass"
    mkdir -p "$STORE" && gocryptfs -init -q -passfile "$WORK/gocryptfs.pass" "$STORE"
}
mount_gocryptfs() { gocryptfs -q -passfile "$WORK/gocryptfs.pass" "$STORE" "$MNT"; }
unmount_gocryptfs() { fusermount3 -u "$MNT"; }

export CRYFS_FRONTEND=noninteractive CRYFS_NO_UPDATE_CHECK=true
setup_cryfs() {
    export CRYFS_LOCAL_STATE_DIR=$WORK/cryfs-state
    mkdir -p "$STORE" "$CRYFS_LOCAL_STATE_DIR"
}
mount_cryfs() { printf '%s\n' "$PASS" | cryfs --logfile "$LOGS/cryfs.log" "$STORE" "$MNT"; }
unmount_cryfs() { fusermount3 -u "$MNT"; }

setup_securefs() { mkdir -p "$STORE" && securefs create --pass "$PASS" "$STORE"; }
mount_securefs() { securefs mount -b --log "$LOGS/securefs.log" --pass "$PASS" "$STORE" "$MNT"; }
unmount_securefs() { fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT"; }

setup_rclone() {
    mkdir -p "$STORE" "$WORK/rclone-cache"
    cat >"$WORK/rclone.conf" <<EOF
[benchcrypt]
type = crypt
remote = $STORE
password = $(rclone obscure "$PASS")
password2 = $(rclone obscure "$PASS salt")
EOF
}
# rclone runs in the foreground as our child (with --daemon its remote
# control server fails to start): the control server on a loopback port
# tells when the uploads are done. `--vfs-write-back 0s` starts each upload
# at close instead of 5 s later; without waiting for them, an unmount
# leaves files in rclone's cache, not in the store.
mount_rclone() { rclone_mount rclone "$WORK/rclone.conf" benchcrypt: "$WORK/rclone-cache"; }
# rclone_mount SYS CONF REMOTE CACHE: starts rclone on $MNT in the background.
rclone_mount() {
    local sys=$1 conf=$2 remote=$3 cache=$4 dirty
    dirty=$(grep -rlE '"Dirty": *true' "$cache/vfsMeta" 2>/dev/null | wc -l)
    if [[ $dirty -eq 0 ]]; then
        rm -rf "${cache:?}"/* # everything is in the store: read it from there
    else
        NOTE[$sys]+="$dirty file(s) were still not uploaded after an unmount. "
    fi
    # A port outside the kernel's ephemeral range, used by no socket at all:
    # ss -l alone misses a connection's local port (one of rclone's own to
    # the store took the port picked once, and the mount failed to bind).
    RC_PORT=''
    local p low high range
    read -r low high </proc/sys/net/ipv4/ip_local_port_range
    if ((low > 2100)); then
        range=$((low > 20100 ? 20000 : 2000))-$((low - 1))
    elif ((high < 63000)); then
        range=$((high + 1))-65535
    else
        log "no loopback port outside the ephemeral range $low-$high for rclone's control server"
        return 1
    fi
    for p in $(shuf -i "$range" -n 20); do
        [[ -z $(ss -tanH "sport = :$p" 2>/dev/null) ]] && RC_PORT=$p && break
    done
    [[ -n $RC_PORT ]] || return 1
    # env -u: rclone refuses an AWS_CA_BUNDLE for its plain-HTTP S3 remote
    # ("unable to load custom CA bundle"); the test server needs none.
    env -u AWS_CA_BUNDLE rclone --config "$conf" mount "$remote" "$MNT" \
        --vfs-cache-mode writes --vfs-write-back 0s --cache-dir "$cache" \
        --rc --rc-addr "127.0.0.1:$RC_PORT" --rc-no-auth \
        --log-file "$LOGS/$sys.log" </dev/null &
    STARTED+=($!)
}
# rclone_uploads CONF: queued + in-progress uploads, per the remote control.
rclone_uploads() {
    rclone --config "$1" rc --url "http://127.0.0.1:$RC_PORT/" vfs/stats 2>/dev/null |
        awk -F'[:,]' '/"uploads(InProgress|Queued)"/ { n += $2; seen++ } END { print (seen == 2 ? n : "?") }'
}
unmount_rclone() { rclone_unmount "$WORK/rclone.conf" "$WORK/rclone-cache"; }
# rclone_unmount CONF CACHE: waits until the uploads drained, then
# unmounts. Drained means no upload queued or running (vfs/stats) *and* no
# file in the cache still marked dirty: right after a close, vfs/stats can
# show nothing queued yet while the file is still only in the cache.
rclone_unmount() {
    local i zeros=0 n dirty
    for ((i = 0; i < 3000 && zeros < 2; i++)); do
        n=$(rclone_uploads "$1")
        dirty=$(grep -rlE '"Dirty": *true' "$2/vfsMeta" 2>/dev/null | wc -l)
        if [[ $n == 0 && $dirty == 0 ]]; then ((zeros++)); else zeros=0; fi
        sleep 0.2
    done
    [[ $zeros -ge 2 ]] || log "rclone: uploads not finished after 600 s (last count: $n, dirty files: $dirty)"
    fusermount3 -u "$MNT"
}

# mount_sys SYS: mounts and starts the RSS sampler.
mount_sys() {
    local sys=$1 i
    [[ $sys == plain ]] && return 0
    # (3 and 4 closed: a daemon holding our stdout would keep a pipe open)
    "mount_$sys" >>"$LOGS/$sys.out" 2>&1 3>&- 4>&- || { log "$sys: mount failed (see $LOGS/$sys.out)"; return 1; }
    for ((i = 0; i < 300; i++)); do
        check_fuse_mounted "$MNT" 2>/dev/null && break
        sleep 0.1
    done
    check_fuse_mounted "$MNT" || return 1
    MOUNTED+=("$sys $MNT")
    DPID=$(daemon_pid "$MNT") || DPID=''
    if [[ -n $DPID ]]; then
        echo 0 0 >"$WORK/rss.$sys"
        sample_rss "$DPID" "$WORK/rss.$sys" &
        SAMPLERS+=($!)
    else
        log "$sys: daemon pid not found; no memory figures"
    fi
}

# unmount_sys SYS: unmounts, waits for the daemon to exit, folds its memory
# figures into HWM and PEAK.
unmount_sys() {
    local sys=$1 i rc=0
    [[ $sys == plain ]] && return 0
    "unmount_$sys" || rc=$?
    if [[ -n $DPID ]]; then
        for ((i = 0; i < 6000; i++)); do
            alive "$DPID" || break
            sleep 0.05
        done
        alive "$DPID" && { log "$sys: daemon $DPID still running 600 s after unmount"; rc=1; }
        wait "${SAMPLERS[-1]}" 2>/dev/null
        local peak hwm
        read -r peak hwm <"$WORK/rss.$sys" || peak=0 hwm=0
        ((peak > ${PEAK[$sys]:-0})) && PEAK[$sys]=$peak
        ((hwm > ${HWM[$sys]:-0})) && HWM[$sys]=$hwm
        PEAKS[$sys]+="$PHASE $((peak / 1024)), "
        log "$sys: daemon peak RSS $((peak / 1024)) MiB, VmHWM $((hwm / 1024)) MiB while mounted for $PHASE"
    fi
    is_mounted "$MNT" && { log "$sys: still mounted after unmount"; rc=1; }
    return "$rc"
}

remount_cold() {
    local sys=$1
    unmount_sys "$sys" || return 1
    drop_caches
    mount_sys "$sys"
}

tree_count() { # CHECK a number that must be the same on every system
    CHECK[$1,$2]=$3
}

# The timed operations on the tree ($MNT/tree).
op_untar() { tar -xf "$SHM/tree.tar" -C "$MNT/tree" --no-same-owner && sync; }
op_ls() { ls -lRA "$MNT/tree" >"$WORK/ls.out"; }
op_grep() { # exit 1 = no match, still a full scan
    (cd "$MNT/tree" && grep -rcF -- "$GREP_FOR" . >"$WORK/grep.out")
    [[ $? -le 1 ]]
}
op_rm() { rm -rf "$MNT/tree" && sync; }

run_system() {
    local sys=$1 n
    STORE=$WORK/$sys.store MNT=$WORK/$sys.mnt DPID=''
    : >"$LOGS/$sys.out"
    mkdir -p "$MNT"
    log "=== $sys"
    "setup_$sys" >>"$LOGS/$sys.out" 2>&1 || { SKIP[$sys]="setup failed (see $LOGS/$sys.out)"; return; }
    mount_sys "$sys" || { SKIP[$sys]="mount failed (see $LOGS/$sys.out)"; return; }

    drop_caches
    PHASE="write"
    timed "$sys" write dd if="$SHM/random" of="$MNT/big" bs=1M conv=fsync status=none
    timed "$sys" umount-w unmount_sys "$sys" || { SKIP[$sys]="unmount failed"; return; }
    drop_caches
    PHASE="read"
    mount_sys "$sys" || { SKIP[$sys]="remount failed"; return; }
    timed "$sys" read dd if="$MNT/big" of=/dev/null bs=1M status=none
    if cmp -s "$SHM/random" "$MNT/big"; then
        tree_count "$sys" big-ok 1
    else
        tree_count "$sys" big-ok 0
        log "$sys: the file read back DIFFERS from what was written"
    fi
    rm -f "$MNT/big"
    mkdir -p "$MNT/tree"
    PHASE="read"
    remount_cold "$sys" || { SKIP[$sys]="remount failed"; return; }
    PHASE="untar"
    timed "$sys" untar op_untar
    timed "$sys" umount-t unmount_sys "$sys" || { SKIP[$sys]="unmount failed"; return; }
    drop_caches
    PHASE="ls+grep+rm"
    mount_sys "$sys" || { SKIP[$sys]="remount failed"; return; }
    timed "$sys" ls-lR op_ls
    tree_count "$sys" ls-lines "$(grep -c . "$WORK/ls.out")"
    tree_count "$sys" ls-files "$(grep -c '^-' "$WORK/ls.out")"
    timed "$sys" grep-r op_grep
    n=$(awk -F: '{ s += $NF } END { print s + 0 }' "$WORK/grep.out")
    tree_count "$sys" grep-hits "$n"
    timed "$sys" rm-rf op_rm
    [[ -z $(ls -A "$MNT") ]] || log "$sys: mount not empty after rm -rf"
    unmount_sys "$sys" || log "$sys: final unmount failed"
}

# --- run --------------------------------------------------------------------------

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > 0.25 * n) }'; then
    log "warning: load average $LOAD_BEFORE before the run: other work on this machine skews the times"
fi

for s in "${SYSTEMS[@]}"; do
    [[ -n ${SKIP[$s]:-} ]] && { log "skipping $s: ${SKIP[$s]}"; continue; }
    run_system "$s"
done
[[ ${#S3_SYSTEMS[@]} -gt 0 ]] && s3_run

# --- report -----------------------------------------------------------------------

version_of() {
    case $1 in
    plain) echo "$(findmnt -no FSTYPE -T "$WORK") on $(findmnt -no SOURCE -T "$WORK")" ;;
    sealedfs | sealedfs-aes | sealedfs-noaudit) "$SFS" --version ;;
    gocryptfs) gocryptfs -version 2>&1 | head -n1 ;;
    cryfs) cryfs --version 2>&1 | grep -m1 Version ;;
    securefs) echo "securefs $(dpkg-query -W -f '${Version}' securefs 2>/dev/null)" ;;
    rclone) rclone version 2>/dev/null | head -n1 ;;
    esac
}

ratio() { # peer sealedfs -> "1.23" or "–"
    awk -v p="$1" -v s="$2" 'BEGIN {
        if (p !~ /^[0-9.]+$/ || s !~ /^[0-9.]+$/ || s == 0) { print "–"; exit }
        printf "%.2f", p / s }'
}

sum() { # a b -> "a+b" or "–"
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/) { print "–"; exit }
        printf "%.2f", a + b }'
}

declare -A LABEL=(
    [write]="write ${SIZE_MB} MiB (dd, conv=fsync)"
    [umount-w]="unmount after write"
    [read]="read ${SIZE_MB} MiB cold (dd)"
    [untar]="untar tree + sync"
    [umount-t]="unmount after untar"
    [ls-lR]="ls -lRA cold"
    [grep-r]="grep -rc '$GREP_FOR'"
    [rm-rf]="rm -rf tree + sync"
)
measured=()
for s in "${SYSTEMS[@]}"; do [[ -z ${SKIP[$s]:-} ]] && measured+=("$s"); done

{
    echo "# sealedfs benchmark results"
    echo
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)."
    echo "Volumes in $(dirname "$WORK") ($(findmnt -no FSTYPE,SOURCE -T "$WORK" | tr -s ' ')); sources in ${SHM%/*} (tmpfs)."
    echo "Load average (1, 5, 15 min) before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)."
    [[ -n ${BENCH_SEALEDFS_OPTS:-} ]] && echo "sealedfs mounted with: $BENCH_SEALEDFS_OPTS."
    echo "Sequential file: ${SIZE_MB} MiB of random bytes. Tree: $TREE_DESC — $TREE_FILES files, $TREE_DIRS directories, $TREE_MB MiB."
    echo
    if [[ ${#measured[@]} -gt 0 ]]; then
        echo "## On the local disk"
        echo
        echo "Seconds per operation (lower is better); ratio = peer time / sealedfs time (> 1: sealedfs is faster)."
        echo
        printf '| operation |'
        for s in "${measured[@]}"; do printf ' %s |' "$s"; done
        echo
        printf '|---|'
        for s in "${measured[@]}"; do printf -- '---|'; done
        echo
        for op in "${OPS[@]}"; do
            printf '| %s |' "${LABEL[$op]}"
            for s in "${measured[@]}"; do
                v=${T[$s,$op]:-–}
                if [[ $s == plain && $op == umount-* ]]; then
                    printf ' – |'
                elif [[ $s == sealedfs || $v == fail || $v == – ]]; then
                    printf ' %s |' "$v"
                else
                    printf ' %s (%s×) |' "$v" "$(ratio "$v" "${T[sealedfs,$op]:-}")"
                fi
            done
            echo
        done
        for pair in write:umount-w untar:umount-t; do
            a=${pair%%:*} b=${pair#*:}
            printf '| %s + unmount (until stored) |' "$a"
            for s in "${measured[@]}"; do
                [[ $s == plain ]] && v=${T[$s,$a]:-} || v=$(sum "${T[$s,$a]:-}" "${T[$s,$b]:-}")
                if [[ $s == sealedfs || $v == – ]]; then
                    printf ' %s |' "$v"
                else
                    sv=$(sum "${T[sealedfs,$a]:-}" "${T[sealedfs,$b]:-}")
                    printf ' %s (%s×) |' "$v" "$(ratio "$v" "$sv")"
                fi
            done
            echo
        done
        for op in write read; do
            printf '| %s MiB/s |' "$op"
            for s in "${measured[@]}"; do
                awk -v t="${T[$s,$op]:-}" -v m="$SIZE_MB" 'BEGIN {
                    if (t ~ /^[0-9.]+$/ && t > 0) printf " %.0f |", m / t; else printf " – |" }'
            done
            echo
        done
        for m in HWM PEAK; do
            if [[ $m == HWM ]]; then printf '| daemon VmHWM, MiB |'; else printf '| daemon peak RSS (sampled), MiB |'; fi
            for s in "${measured[@]}"; do
                declare -n mem=$m
                v=${mem[$s]:-}
                if [[ -z $v ]]; then
                    printf ' – |'
                else
                    mib=$(awk -v k="$v" 'BEGIN { printf "%.0f", k / 1024 }')
                    if [[ $s == sealedfs ]]; then
                        printf ' %s |' "$mib"
                    else
                        printf ' %s (%s×) |' "$mib" "$(ratio "$v" "${mem[sealedfs]:-}")"
                    fi
                fi
                unset -n mem
            done
            echo
        done
        echo
        echo "Versions:"
        echo
        for s in "${measured[@]}"; do echo "- $s: $(version_of "$s")"; done
        for s in "${SYSTEMS[@]}"; do [[ -n ${SKIP[$s]:-} ]] && echo "- $s: not measured: ${SKIP[$s]}"; done
        for s in "${measured[@]}"; do [[ -n ${NOTE[$s]:-} ]] && echo "- note on $s: ${NOTE[$s]}"; done
        echo
        for what in C IO K; do
            case $what in
            C) echo "Daemon CPU seconds during each operation (all threads; total=user+system):" ;;
            IO) echo "Daemon syscall I/O during each operation, MiB read/written (rchar/wchar: store files and /dev/fuse alike):" ;;
            K) echo "CPU seconds of the command itself (dd, tar, ls, grep, rm, sync; user + system, including the kernel's FUSE and page-cache work done in its syscalls):" ;;
            esac
            echo
            printf '| operation |'
            for s in "${measured[@]}"; do [[ $s != plain || $what == K ]] && printf ' %s |' "$s"; done
            echo
            printf '|---|'
            for s in "${measured[@]}"; do [[ $s != plain || $what == K ]] && printf -- '---|'; done
            echo
            declare -n tab=$what
            for op in write read untar ls-lR grep-r rm-rf; do
                printf '| %s |' "${LABEL[$op]}"
                for s in "${measured[@]}"; do [[ $s != plain || $what == K ]] && printf ' %s |' "${tab[$s,$op]:-–}"; done
                echo
            done
            unset -n tab
            echo
        done
        echo
        echo "Daemon peak RSS (MiB) per mount, by what the mount was used for:"
        echo
        for s in "${measured[@]}"; do [[ -n ${PEAKS[$s]:-} ]] && echo "- $s: ${PEAKS[$s]%, }"; done
        echo
        echo "Consistency checks (must be equal across systems):"
        echo
        for c in big-ok ls-files ls-lines grep-hits; do
            printf -- '- %s:' "$c"
            for s in "${measured[@]}"; do printf ' %s=%s' "$s" "${CHECK[$s,$c]:-?}"; done
            echo
        done
    fi
    [[ ${#S3_SYSTEMS[@]} -gt 0 ]] && s3_report
} >"$OUT/results.md"

cat "$OUT/results.md"
log "wrote $OUT/results.md"

# SQLite commit rates (BENCH_SQLITE=0 skips them): scripts/bench-sqlite.sh.
[[ ${BENCH_SQLITE:-1} == 0 ]] || BENCH_SKIP_BUILD=1 BENCH_SQLITE_BIN=$SFS "$(dirname "$0")/bench-sqlite.sh"
