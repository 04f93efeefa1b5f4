# shellcheck shell=bash
# The S3 half of scripts/bench.sh (sourced by it, never run alone): the
# same run measures, on the S3 test server (moto on 127.0.0.1, started
# here through lib.sh), each of
#   s3-raw       the server itself: PUT then GET of the same bytes, in
#                objects of sealedfs's pack size, with as many requests in
#                flight as sealedfs keeps (examples/s3_raw.rs, the same
#                client library sealedfs uses)
#   s3-sealedfs  sealedfs with the volume in a fresh bucket prefix
#   s3-sealedfs-dc  the same with the disk cache (--cache-dir on the bench
#                disk, default bound): its cold read after the remount is
#                served by the pack ciphertext written through at upload;
#                after the check (which starts from an empty disk cache and
#                fills it by reading) one more cold read, from disk
#   s3-sealedfs-aes  the same with the FIPS suite (AES-256-GCM units):
#                where the CPU has AES instructions, decryption costs a
#                fraction of XChaCha20-Poly1305's (not in the default list)
#   s3-rclone    an rclone crypt remote over an S3 remote, `rclone mount
#                --vfs-cache-mode writes`; every figure includes waiting
#                until its uploads drained
#   s3-s3fs      s3fs-fuse (no client-side encryption), where installable
# Each system starts from an empty prefix. Operations, per FUSE system:
#   write      dd a BENCH_S3_SIZE_MB random file in (bs=1M, conv=fsync),
#              then unmount: "until durable" is the sum
#   read-cold  dd it out after unmount + drop_caches + mount
#   read-warm  the same again on that mount
#   create     BENCH_S3_FILES files of 4 KiB in one directory (`split`, one
#              process), then unmount: until durable
#   read-small cat of all of them, one after another, after a cold mount
#   untar      tar -x of a small tree (BENCH_S3_TREE_FILES files of the
#              local tree, with their directories), then unmount
#   ls-lR      ls -lRA of it after a cold mount
# Then every file is compared with its source on one more cold mount (for
# rclone, with an empty cache: what the store holds); a peer that lost or
# changed files is reported, never hidden.
# Ratios are peer time / sealedfs time (> 1: sealedfs is faster); for the
# raw server, raw time / sealedfs time (sealedfs's share of the server's
# throughput). Nothing asserts on times.
#
# Uses from bench.sh: WORK, SHM, LOGS, SFS, PASS, timed, mount_sys,
# unmount_sys, remount_cold, drop_caches, rclone_mount, rclone_unmount, sum, ratio,
# and the result tables T, C, IO, K, PEAK, HWM, NOTE, SKIP.

S3_SIZE_MB=${BENCH_S3_SIZE_MB:-256}
S3_FILES=${BENCH_S3_FILES:-300}
S3_TREE_FILES=${BENCH_S3_TREE_FILES:-300}
read -r -a S3_SYSTEMS <<<"${BENCH_S3_SYSTEMS:-s3-raw s3-sealedfs s3-sealedfs-dc s3-rclone s3-s3fs}"
S3_RAW=${CARGO_TARGET_DIR:-$SEALEDFS_ROOT/target}/release/examples/s3_raw
declare -A S3_CHECK=() # system -> what the check after remount found

# s3_inputs: the sources of the S3 steps, in tmpfs: the sequential file,
# the small files' bytes (one file, cut by split) and the small tree
# (extracted for the comparison, and as a tarball).
s3_inputs() {
    head -c "$((S3_SIZE_MB << 20))" "$SHM/random" >"$SHM/s3-big" 2>/dev/null
    if [[ $(stat -c %s "$SHM/s3-big") -lt $((S3_SIZE_MB << 20)) ]]; then
        head -c "$((S3_SIZE_MB << 20))" /dev/urandom >"$SHM/s3-big"
    fi
    head -c "$((S3_FILES * 4096))" /dev/urandom >"$SHM/s3-small"
    # The first S3_TREE_FILES regular files of the local tree, in tar
    # order, with every directory on their way.
    paste -d '' <(tar -tvf "$SHM/tree.tar" | cut -c1) <(tar -tf "$SHM/tree.tar") |
        awk -v n="$S3_TREE_FILES" '{ f += /^-/ } f > n { exit } { print substr($0, 2) }' >"$SHM/s3-tree.list"
    mkdir -p "$SHM/s3-tree"
    tar -xf "$SHM/tree.tar" -C "$SHM/s3-tree" --no-recursion -T "$SHM/s3-tree.list" ||
        die "cannot cut the small tree from the tree tarball"
    tar -C "$SHM/s3-tree" -cf "$SHM/s3-tree.tar" . || die "cannot build the small tree tarball"
    S3_TREE_COUNT=$(find "$SHM/s3-tree" -type f | wc -l)
    S3_TREE_DIRS=$(find "$SHM/s3-tree" -mindepth 1 -type d | wc -l)
}

# --- the server and the systems ------------------------------------------------

s3_server_up() {
    s3_server_start "$WORK/s3" >>"$LOGS/moto.out" 2>&1 || return 1
    # shellcheck disable=SC1091 # written by s3_server_start
    . "$WORK/s3/env"
    export AWS_ENDPOINT_URL=$SEALEDFS_TEST_S3_ENDPOINT
    S3_BUCKET=$SEALEDFS_TEST_S3_BUCKET
}

s3_prefix() { echo "bench-$1-$$"; }

setup_s3-sealedfs() {
    STORE=s3://$S3_BUCKET/$(s3_prefix sealedfs)
    setup_sealedfs
}
mount_s3-sealedfs() { mount_sealedfs; }
unmount_s3-sealedfs() { unmount_sealedfs; }
setup_s3-sealedfs-aes() {
    STORE=s3://$S3_BUCKET/$(s3_prefix sealedfs-aes)
    SEALEDFS_BENCH_CIPHER=aes-256-gcm setup_sealedfs
}
mount_s3-sealedfs-aes() { mount_sealedfs; }
unmount_s3-sealedfs-aes() { unmount_sealedfs; }
setup_s3-sealedfs-dc() {
    STORE=s3://$S3_BUCKET/$(s3_prefix sealedfs-dc)
    rm -rf "${WORK:?}/s3-disk-cache"
    setup_sealedfs
}
mount_s3-sealedfs-dc() {
    BENCH_SEALEDFS_OPTS="${BENCH_SEALEDFS_OPTS:-} --cache-dir $WORK/s3-disk-cache" mount_sealedfs
}
unmount_s3-sealedfs-dc() { unmount_sealedfs; }

setup_s3-rclone() {
    local prefix
    prefix=$(s3_prefix rclone)
    mkdir -p "$WORK/s3-rclone-cache"
    cat >"$WORK/rclone-s3.conf" <<EOF
[bench3]
type = s3
provider = Other
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
endpoint = $SEALEDFS_TEST_S3_ENDPOINT
region = $AWS_REGION
force_path_style = true
# One PUT per file: rclone's multipart upload (files over 200 MiB) gets
# "400 Bad Request" from moto and the file never leaves rclone's cache.
upload_cutoff = 5G

[bench3crypt]
type = crypt
remote = bench3:$S3_BUCKET/$prefix
password = $(rclone obscure "$PASS")
password2 = $(rclone obscure "$PASS salt")
EOF
    chmod 600 "$WORK/rclone-s3.conf"
}
mount_s3-rclone() { rclone_mount s3-rclone "$WORK/rclone-s3.conf" bench3crypt: "$WORK/s3-rclone-cache"; }
unmount_s3-rclone() { rclone_unmount "$WORK/rclone-s3.conf" "$WORK/s3-rclone-cache"; }

setup_s3-s3fs() {
    printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/s3fs.passwd"
    chmod 600 "$WORK/s3fs.passwd"
    # s3fs mounts a prefix only once a directory object names it.
    "$MOTO_VENV/bin/python" - "$S3_BUCKET" "$(s3_prefix s3fs)/" <<'PY'
import sys, boto3
boto3.client("s3").put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=b"")
PY
}
mount_s3-s3fs() {
    s3fs "$S3_BUCKET:/$(s3_prefix s3fs)" "$MNT" -o "passwd_file=$WORK/s3fs.passwd" \
        -o "url=$SEALEDFS_TEST_S3_ENDPOINT" -o use_path_request_style -o "endpoint=$AWS_REGION" \
        -o "logfile=$LOGS/s3fs.log"
}
unmount_s3-s3fs() { fusermount3 -u "$MNT"; }

# --- the steps ---------------------------------------------------------------------

s3_op_write() { dd if="$SHM/s3-big" of="$MNT/big" bs=1M conv=fsync status=none; }
s3_op_read() { dd if="$MNT/big" of=/dev/null bs=1M status=none; }
s3_op_create() { mkdir "$MNT/small" && split -b 4096 -a 4 -d "$SHM/s3-small" "$MNT/small/f"; }
s3_op_read_small() { cat "$MNT"/small/f* >/dev/null; }
s3_op_untar() { mkdir "$MNT/tree" && tar -xf "$SHM/s3-tree.tar" -C "$MNT/tree" --no-same-owner; }
s3_op_ls() { ls -lRA "$MNT/tree" >"$WORK/s3-ls.out"; }

# s3_check SYS: every file against its source, on a cold mount; what is
# missing or different is reported as data loss.
s3_check() {
    local sys=$1 lost=() missing n
    cmp -s "$SHM/s3-big" "$MNT/big" || lost+=("big file missing or different")
    n=$(find "$MNT/small" -type f 2>/dev/null | wc -l)
    ((n < S3_FILES)) && lost+=("$((S3_FILES - n)) of $S3_FILES small files missing")
    cat "$MNT"/small/f* 2>/dev/null | cmp -s - "$SHM/s3-small" || lost+=("small files differ")
    if [[ -d $MNT/tree ]]; then
        missing=$(diff -rq "$SHM/s3-tree" "$MNT/tree" 2>/dev/null | grep -c .)
        ((missing > 0)) && lost+=("$missing tree entries missing or different")
    else
        lost+=("the tree is missing")
    fi
    if [[ ${#lost[@]} -eq 0 ]]; then
        S3_CHECK[$sys]="all data intact"
    else
        S3_CHECK[$sys]="DATA LOSS: $(IFS=';'; echo "${lost[*]}")"
        log "$sys: ${S3_CHECK[$sys]}"
    fi
}

run_s3_system() {
    local sys=$1
    STORE=$WORK/$sys.store MNT=$WORK/$sys.mnt DPID=''
    : >"$LOGS/$sys.out"
    mkdir -p "$MNT"
    log "=== $sys"
    "setup_$sys" >>"$LOGS/$sys.out" 2>&1 || { SKIP[$sys]="setup failed (see $LOGS/$sys.out)"; return; }
    mount_sys "$sys" || { SKIP[$sys]="mount failed (see $LOGS/$sys.out)"; return; }
    PHASE="write"
    drop_caches
    timed "$sys" write s3_op_write
    timed "$sys" umount-w unmount_sys "$sys" || { SKIP[$sys]="unmount failed"; return; }
    drop_caches
    PHASE="read"
    mount_sys "$sys" || { SKIP[$sys]="remount failed"; return; }
    timed "$sys" read-cold s3_op_read
    timed "$sys" read-warm s3_op_read
    timed "$sys" create s3_op_create
    timed "$sys" umount-c unmount_sys "$sys" || { SKIP[$sys]="unmount failed"; return; }
    drop_caches
    PHASE="small files"
    mount_sys "$sys" || { SKIP[$sys]="remount failed"; return; }
    timed "$sys" read-small s3_op_read_small
    timed "$sys" untar s3_op_untar
    timed "$sys" umount-t unmount_sys "$sys" || { SKIP[$sys]="unmount failed"; return; }
    drop_caches
    PHASE="ls"
    mount_sys "$sys" || { SKIP[$sys]="remount failed"; return; }
    timed "$sys" ls-lR s3_op_ls
    unmount_sys "$sys" || { SKIP[$sys]="unmount failed"; return; }
    # The check reads what the store holds, as a new host would: rclone
    # starts from an empty cache, so a file it never uploaded is missing.
    [[ $sys == s3-rclone ]] && rm -rf "${WORK:?}/s3-rclone-cache"/*
    [[ $sys == s3-sealedfs-dc ]] && rm -rf "${WORK:?}/s3-disk-cache"
    PHASE="check"
    # A check that cannot mount says so in its row; the figures above stay.
    if ! mount_sys "$sys"; then
        S3_CHECK[$sys]="not checked: the remount failed (see $LOGS/$sys.out)"
        log "$sys: ${S3_CHECK[$sys]}"
        return
    fi
    s3_check "$sys"
    unmount_sys "$sys" || log "$sys: final unmount failed"
    # The check filled the emptied disk cache by reading: a cold read from
    # it, as after a remount on a host that did not write the file.
    if [[ $sys == s3-sealedfs-dc ]]; then
        drop_caches
        PHASE="read from disk cache"
        mount_sys "$sys" || { SKIP[$sys]="remount failed"; return; }
        timed "$sys" read-filled s3_op_read
        unmount_sys "$sys" || log "$sys: final unmount failed"
    fi
}

# run_s3_raw: the server's own PUT and GET throughput for the same bytes.
run_s3_raw() {
    local out put get
    log "=== s3-raw"
    read -r S3_PACK_MIB S3_PUT_CONC S3_GET_CONC < <("$S3_RAW" --tuning)
    if ! out=$("$S3_RAW" "s3://$S3_BUCKET/$(s3_prefix raw)" "$S3_SIZE_MB" 2>>"$LOGS/s3-raw.out"); then
        SKIP[s3-raw]="failed (see $LOGS/s3-raw.out)"
        return
    fi
    put=$(awk '$1 == "put" { print $2 }' <<<"$out")
    get=$(awk '$1 == "get" { print $2 }' <<<"$out")
    T[s3-raw,write]=$put T[s3-raw,read-cold]=$get
    log "s3-raw: PUT ${put} s, GET ${get} s for $S3_SIZE_MB MiB in ${S3_PACK_MIB} MiB objects ($S3_PUT_CONC / $S3_GET_CONC in flight)"
}

s3_run() {
    local s
    for s in "${S3_SYSTEMS[@]}"; do
        case $s in
        s3-raw) [[ -x $S3_RAW ]] || SKIP[$s]="missing $S3_RAW" ;;
        s3-sealedfs | s3-sealedfs-aes | s3-sealedfs-dc) ;;
        s3-rclone | s3-s3fs) command -v "${s#s3-}" >/dev/null || SKIP[$s]="not installed" ;;
        *) die "unknown system '$s' in BENCH_S3_SYSTEMS" ;;
        esac
    done
    s3_server_up || {
        log "the S3 test server did not start (see $LOGS/moto.out): no S3 figures"
        for s in "${S3_SYSTEMS[@]}"; do SKIP[$s]="no S3 test server"; done
        return
    }
    s3_inputs
    log "S3: moto at $SEALEDFS_TEST_S3_ENDPOINT; $S3_SIZE_MB MiB file, $S3_FILES small files, tree of $S3_TREE_COUNT files"
    for s in "${S3_SYSTEMS[@]}"; do
        [[ -n ${SKIP[$s]:-} ]] && { log "skipping $s: ${SKIP[$s]}"; continue; }
        if [[ $s == s3-raw ]]; then run_s3_raw; else run_s3_system "$s"; fi
    done
}

s3_stop() { [[ -d $WORK/s3 ]] && s3_server_stop "$WORK/s3"; }

# --- report --------------------------------------------------------------------------

# s3_cell SYS A [B]: the seconds of op A (+ op B) on SYS, with the ratio
# against sealedfs's, or "–".
s3_cell() {
    local sys=$1 a=$2 b=${3:-} v sv
    v=${T[$sys,$a]:-–} sv=${T[s3-sealedfs,$a]:-–}
    # Only the disk cache has this read: against sealedfs's from S3.
    [[ $a == read-filled ]] && sv=${T[s3-sealedfs,read-cold]:-–}
    if [[ -n $b && $sys != s3-raw ]]; then
        v=$(sum "$v" "${T[$sys,$b]:-–}") sv=$(sum "$sv" "${T[s3-sealedfs,$b]:-–}")
    fi
    if [[ $sys == s3-sealedfs || $v == – || $v == fail ]]; then
        printf ' %s |' "$v"
    else
        printf ' %s (%s×) |' "$v" "$(ratio "$v" "$sv")"
    fi
}

# s3_rate SYS A [B] UNITS: UNITS / seconds of op A (+ B).
s3_rate() {
    local sys=$1 a=$2 b=$3 units=$4 v
    v=${T[$sys,$a]:-–}
    [[ -n $b && $sys != s3-raw ]] && v=$(sum "$v" "${T[$sys,$b]:-–}")
    awk -v t="$v" -v u="$units" 'BEGIN { if (t ~ /^[0-9.]+$/ && t > 0) printf " %.0f |", u / t; else printf " – |" }'
}

s3_report() {
    local measured=() s op
    for s in "${S3_SYSTEMS[@]}"; do [[ -z ${SKIP[$s]:-} ]] && measured+=("$s"); done
    echo
    echo "## On S3 (moto on 127.0.0.1)"
    echo
    echo "Sequential file: $S3_SIZE_MB MiB. Small files: $S3_FILES × 4 KiB in one directory."
    echo "Tree: the first $S3_TREE_COUNT files of the tree above, in $S3_TREE_DIRS directories."
    [[ -n ${S3_PACK_MIB:-} ]] && echo "s3-raw: $S3_PACK_MIB MiB objects, $S3_PUT_CONC PUT(s) and $S3_GET_CONC GET(s) in flight, as sealedfs keeps."
    echo "Seconds (lower is better); ratio = system's time / sealedfs's (> 1: sealedfs is faster; for s3-raw, sealedfs's share of the server's speed; its write ratio takes sealedfs's dd alone, durable at its end by conv=fsync)."
    echo "\"until durable\" includes the unmount, which for rclone waits until its uploads drained."
    echo
    printf '| operation |'
    for s in "${measured[@]}"; do printf ' %s |' "$s"; done
    printf '\n|---|'
    for s in "${measured[@]}"; do printf -- '---|'; done
    echo
    local rows=(
        "write $S3_SIZE_MB MiB until durable|write|umount-w"
        "read $S3_SIZE_MB MiB cold|read-cold|"
        "read $S3_SIZE_MB MiB cold, disk cache filled by a read|read-filled|"
        "read $S3_SIZE_MB MiB warm|read-warm|"
        "create $S3_FILES files until durable|create|umount-c"
        "read $S3_FILES files cold|read-small|"
        "untar $S3_TREE_COUNT files until durable|untar|umount-t"
        "ls -lRA cold|ls-lR|"
    )
    local row label a b
    for row in "${rows[@]}"; do
        IFS='|' read -r label a b <<<"$row"
        printf '| %s |' "$label"
        for s in "${measured[@]}"; do s3_cell "$s" "$a" "$b"; done
        echo
    done
    for row in "write MB/s|write|umount-w|$S3_SIZE_MB" "read cold MB/s|read-cold||$S3_SIZE_MB" \
        "create files/s|create|umount-c|$S3_FILES" "read small files/s|read-small||$S3_FILES"; do
        IFS='|' read -r label a b n <<<"$row"
        printf '| %s |' "$label"
        for s in "${measured[@]}"; do s3_rate "$s" "$a" "$b" "$n"; done
        echo
    done
    printf '| daemon peak RSS, MiB |'
    for s in "${measured[@]}"; do
        [[ -n ${PEAK[$s]:-} ]] && printf ' %s |' "$((PEAK[$s] / 1024))" || printf ' – |'
    done
    printf '\n| data after remount |'
    for s in "${measured[@]}"; do printf ' %s |' "${S3_CHECK[$s]:-–}"; done
    echo
    echo
    echo "Daemon CPU seconds (total=user+system) and syscall MiB read/written per operation:"
    echo
    printf '| operation |'
    for s in "${measured[@]}"; do [[ $s != s3-raw ]] && printf ' %s |' "$s"; done
    printf '\n|---|'
    for s in "${measured[@]}"; do [[ $s != s3-raw ]] && printf -- '---|'; done
    echo
    for op in write umount-w read-cold read-filled read-warm create umount-c read-small untar umount-t ls-lR; do
        printf '| %s |' "$op"
        for s in "${measured[@]}"; do
            [[ $s == s3-raw ]] && continue
            printf ' %s, %s |' "${C[$s,$op]:-–}" "${IO[$s,$op]:-–}"
        done
        echo
    done
    echo
    echo "Daemon peak RSS (MiB) per mount: "
    echo
    for s in "${measured[@]}"; do [[ -n ${PEAKS[$s]:-} ]] && echo "- $s: ${PEAKS[$s]%, }"; done
    for s in "${S3_SYSTEMS[@]}"; do [[ -n ${SKIP[$s]:-} ]] && echo "- $s: not measured: ${SKIP[$s]}"; done
    for s in "${measured[@]}"; do [[ -n ${NOTE[$s]:-} ]] && echo "- note on $s: ${NOTE[$s]}"; done
    [[ -n ${measured[*]} ]] && echo "- versions: s3fs $(s3fs --version 2>/dev/null | grep -om1 'V[0-9.]*'), moto $("$MOTO_VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)"
}
