# shellcheck shell=bash
# Helpers shared by scripts/*.sh. Source it (`. "$(dirname "$0")/lib.sh"`);
# it defines functions and variables and runs nothing else.
#
# Variables (all may be set by the caller):
#   SEALEDFS_ROOT       the repository (found from this file)
#   SEALEDFS_BIN        the binary under test   (default $CARGO_TARGET_DIR or
#                       target, then /debug/sealedfs)
#   SEALEDFS_TOOLS      where scripts/test.sh installs pjdfstest, fsx and the
#                       moto venv (default ~/.cache/sealedfs-tools; its bin/
#                       is put on PATH)
#   SEALEDFS_TEST_LOGS  where logs of the mount tests go (default target/test-logs)

SEALEDFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEALEDFS_BIN=${SEALEDFS_BIN:-${CARGO_TARGET_DIR:-$SEALEDFS_ROOT/target}/debug/sealedfs}
SEALEDFS_TOOLS=${SEALEDFS_TOOLS:-$HOME/.cache/sealedfs-tools}
# Exported: the e2e tests start private S3 servers through s3-server.sh,
# which must find the same venv.
export SEALEDFS_TOOLS
SEALEDFS_TEST_LOGS=${SEALEDFS_TEST_LOGS:-$SEALEDFS_ROOT/target/test-logs}
SCRIPT_NAME=${SCRIPT_NAME:-$(basename "$0" .sh)}

# Versions the test counts were measured with.
PJDFSTEST_VERSION=0.2.2
FSX_VERSION=0.3.2

# tools_on_path: $SEALEDFS_TOOLS/bin on PATH once it exists (done here, and
# again after test.sh's setup installed into it).
tools_on_path() {
    if [[ -d $SEALEDFS_TOOLS/bin && :$PATH: != *:$SEALEDFS_TOOLS/bin:* ]]; then
        PATH=$SEALEDFS_TOOLS/bin:$PATH
        export PATH
    fi
}
tools_on_path

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root ($*)"
}

# need_tool NAME [VERSION]: NAME must be on PATH; with VERSION, `NAME --version`
# must print "NAME VERSION" (other versions run, with a warning, since the
# expected counts were measured with VERSION).
need_tool() {
    local name=$1 version=${2:-}
    if ! command -v "$name" >/dev/null 2>&1; then
        case $name in
        pjdfstest | fsx)
            die "missing tool: $name. \`bash scripts/test.sh\` installs it, or by hand:" \
                "cargo install --locked --root \"$SEALEDFS_TOOLS\" pjdfstest@$PJDFSTEST_VERSION fsx@$FSX_VERSION" \
                "(scripts find $SEALEDFS_TOOLS/bin by themselves; elsewhere, put it on PATH)"
            ;;
        fusermount3) die "missing tool: fusermount3. Install it with: apt-get install fuse3" ;;
        mkfs.ext4) die "missing tool: mkfs.ext4. Install it with: apt-get install e2fsprogs" ;;
        *) die "missing tool: $name" ;;
        esac
    fi
    if [[ -n $version ]]; then
        local got
        got=$("$name" --version 2>/dev/null | head -n1)
        [[ $got == "$name $version" ]] ||
            log "warning: $(command -v "$name") reports '$got', expected '$name $version'"
    fi
}

need_sealedfs() {
    [[ -x $SEALEDFS_BIN ]] || die "missing $SEALEDFS_BIN: run \`cargo build\` first"
}

# abs_path PATH: absolute path without touching PATH itself (a dead FUSE
# mountpoint cannot be stat'ed, only its parent).
abs_path() {
    local dir base
    dir=$(cd "$(dirname "$1")" && pwd -P) || return 1
    base=$(basename "$1")
    printf '%s/%s\n' "${dir%/}" "$base"
}

# is_mounted PATH: true when something is mounted on PATH (alive or dead).
is_mounted() {
    local p
    p=$(abs_path "$1") || return 1
    p=${p// /\\040}
    awk -v p="$p" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# mounted_below DIR: true when anything is mounted on DIR or below it.
mounted_below() {
    local p
    p=$(abs_path "$1") || return 1
    p=${p// /\\040}
    awk -v p="$p" '$5 == p || index($5, p "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# fuse_abort PATH: abort the FUSE connection behind PATH (for a hung daemon).
fuse_abort() {
    local p dev
    p=$(abs_path "$1") || return 1
    p=${p// /\\040}
    dev=$(awk -v p="$p" '$5 == p { split($3, d, ":"); print d[2] }' /proc/self/mountinfo | tail -n1)
    [[ -n $dev ]] || return 0
    if [[ ! -e /sys/fs/fuse/connections/$dev ]]; then
        mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || true
    fi
    if [[ -w /sys/fs/fuse/connections/$dev/abort ]]; then
        echo 1 >"/sys/fs/fuse/connections/$dev/abort" || true
    fi
}

# force_unmount PATH: last resort after `sealedfs unmount` failed or hung.
force_unmount() {
    local mnt=$1
    is_mounted "$mnt" || return 0
    fuse_abort "$mnt"
    fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    ! is_mounted "$mnt"
}

# safe_rm DIR: rm -rf DIR, but never through a mount still below it.
safe_rm() {
    local dir=$1
    [[ -n $dir && -d $dir ]] || return 0
    if mounted_below "$dir"; then
        log "warning: not removing $dir: something is still mounted below it"
        return 1
    fi
    rm -rf --one-file-system "$dir"
}

# --- what the test suite needs ---------------------------------------------

# Debian packages: fuse3 (fusermount3, mount.fuse3), mount and util-linux
# (mount -T, umount, unshare and nsenter for the fstab tests), e2fsprogs
# (mkfs.ext4 for the ext4 baseline), attr, acl and rsync (end-to-end
# tests), libacl1-dev (pjdfstest links libacl), procps, python3-venv (the
# S3 test server lives in a venv).
TEST_PACKAGES=(fuse3 mount util-linux e2fsprogs attr acl rsync libacl1-dev procps coreutils python3 python3-venv)

# missing_packages: the TEST_PACKAGES that dpkg does not list as installed
# (none where there is no dpkg: nothing can be installed there anyway).
missing_packages() {
    command -v dpkg-query >/dev/null || return 0
    local p
    for p in "${TEST_PACKAGES[@]}"; do
        [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || echo "$p"
    done
}

# tool_installed NAME VERSION: $SEALEDFS_TOOLS/bin/NAME reports NAME VERSION.
tool_installed() {
    [[ -x $SEALEDFS_TOOLS/bin/$1 && $("$SEALEDFS_TOOLS/bin/$1" --version 2>/dev/null) == "$1 $2" ]]
}

# install_test_deps [quick]: installs what the suite needs and lacks:
# packages (as root, apt-get), pjdfstest and fsx into $SEALEDFS_TOOLS (not
# for quick), moto into $MOTO_VENV. Everything present is left alone: a
# second run installs nothing and does not even run apt-get update.
install_test_deps() {
    local quick=${1:-0} missing=()
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]})); then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "installing packages: ${missing[*]}"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
                die "apt-get update failed"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
        elif [[ $quick == 1 ]]; then
            log "warning: packages missing (${missing[*]}); as root: apt-get install ${missing[*]}"
        else
            die "packages missing: ${missing[*]}. As root: apt-get install ${missing[*]}"
        fi
    else
        log "packages present: ${TEST_PACKAGES[*]}"
    fi
    if [[ $quick == 0 ]]; then
        # The kernel module, where it is not built in.
        [[ -e /dev/fuse ]] || modprobe fuse || true
        if tool_installed pjdfstest "$PJDFSTEST_VERSION" && tool_installed fsx "$FSX_VERSION"; then
            log "pjdfstest $PJDFSTEST_VERSION and fsx $FSX_VERSION present in $SEALEDFS_TOOLS"
        else
            log "installing pjdfstest $PJDFSTEST_VERSION and fsx $FSX_VERSION into $SEALEDFS_TOOLS"
            cargo install --quiet --locked --root "$SEALEDFS_TOOLS" \
                "pjdfstest@$PJDFSTEST_VERSION" "fsx@$FSX_VERSION" ||
                die "cargo install of pjdfstest and fsx failed"
        fi
    fi
    s3_server_install
}

# --- sealedfs volumes ------------------------------------------------------

# The passphrase of throw-away test volumes.
: "${SEALEDFS_TEST_PASSPHRASE:=sealedfs test passphrase}"

# sfs_init VAULT: a fresh test volume (fast KDF: never for real data);
# SEALEDFS_TEST_CIPHER=aes-256-gcm makes it with the FIPS suite.
sfs_init() {
    SEALEDFS_PASSPHRASE=$SEALEDFS_TEST_PASSPHRASE "$SEALEDFS_BIN" init "$1" --insecure-fast-kdf \
        ${SEALEDFS_TEST_CIPHER:+--cipher "$SEALEDFS_TEST_CIPHER"}
}

# sfs_mount VAULT MNT LOGFILE [mount options...]: returns once mounted.
sfs_mount() {
    local vault=$1 mnt=$2 logfile=$3
    shift 3
    SEALEDFS_PASSPHRASE=$SEALEDFS_TEST_PASSPHRASE SEALEDFS_LOG_FILE=$logfile \
        "$SEALEDFS_BIN" mount "$vault" "$mnt" "$@" || return
    check_fuse_mounted "$mnt"
}

# check_fuse_mounted MNT: a FUSE file system is mounted on MNT (so a mount
# command that exits 0 without mounting cannot send tests to the disk below).
check_fuse_mounted() {
    local p fstype
    p=$(abs_path "$1") || return 1
    fstype=$(awk -v p="${p// /\\040}" '$5 == p { for (i = 7; i < NF; i++) if ($i == "-") { t = $(i + 1); break } } END { print t }' /proc/self/mountinfo)
    case $fstype in
    fuse | fuse.*) return 0 ;;
    "") log "error: mount exited 0 but nothing is mounted on $1" ;;
    *) log "error: $1 is a $fstype mount, not FUSE" ;;
    esac
    return 1
}

# sfs_unmount MNT: `sealedfs unmount` with a deadline; its exit status.
sfs_unmount() {
    timeout --kill-after=10 "${SEALEDFS_UNMOUNT_TIMEOUT:-300}" "$SEALEDFS_BIN" unmount "$1"
}

# show_tail FILE [N]: the last N lines of FILE, indented, if it exists.
show_tail() {
    local file=$1 n=${2:-40}
    [[ -s $file ]] || return 0
    echo "----- last $n lines of $file -----" >&2
    tail -n "$n" "$file" | sed 's/^/    /' >&2
    echo "-----" >&2
}

# --- the S3 test server (moto) ---------------------------------------------

# moto >= 5.2.5: 5.2.1 wrongly answers 403 to signed listings with a / in
# the prefix.
MOTO_SPEC='moto[server]>=5.2.5'
MOTO_VENV=${MOTO_VENV:-$SEALEDFS_TOOLS/moto-venv}
export MOTO_VENV

# s3_server_install: moto's server in its own venv, reused when present.
s3_server_install() {
    if [[ -x $MOTO_VENV/bin/moto_server ]] &&
        "$MOTO_VENV/bin/python" -c 'import moto, sys; v = tuple(int(x) for x in moto.__version__.split(".")[:3]); sys.exit(v < (5, 2, 5))' 2>/dev/null; then
        log "moto $("$MOTO_VENV/bin/python" -c 'import moto; print(moto.__version__)') already in $MOTO_VENV"
        return 0
    fi
    command -v python3 >/dev/null || die "missing tool: python3 (apt-get install python3 python3-venv)"
    python3 -m venv "$MOTO_VENV" ||
        die "cannot create a venv in $MOTO_VENV (apt-get install python3-venv)"
    "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC" ||
        die "pip install $MOTO_SPEC failed"
    log "installed moto $("$MOTO_VENV/bin/python" -c 'import moto; print(moto.__version__)') in $MOTO_VENV"
}

# s3_server_start DIR: starts moto on a free loopback port with auth on,
# creates the test user, the bucket sealedfs-e2e, a KMS key (alias
# alias/sealedfs-e2e) and a user denied kms:Decrypt, and writes DIR/env
# (shell exports) and DIR/pid.
s3_server_start() {
    local dir=$1 port pid i
    [[ -x $MOTO_VENV/bin/moto_server ]] || s3_server_install
    mkdir -p "$dir"
    port=$("$MOTO_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    INITIAL_NO_AUTH_ACTION_COUNT=3 MOTO_ALLOW_NONEXISTENT_REGION=false \
        setsid "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    for ((i = 0; i < 300; i++)); do
        if "$MOTO_VENV/bin/python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$port" 2>/dev/null; then
            break
        fi
        kill -0 "$pid" 2>/dev/null || {
            show_tail "$dir/moto.log"
            die "moto exited at start"
        }
        sleep 0.1
    done
    ((i < 300)) || {
        show_tail "$dir/moto.log"
        s3_server_stop "$dir"
        die "moto did not listen on 127.0.0.1:$port within 30 s"
    }
    # Exactly three unauthenticated actions (INITIAL_NO_AUTH_ACTION_COUNT).
    "$MOTO_VENV/bin/python" - "http://127.0.0.1:$port" >"$dir/env" <<'PY' || {
import json, sys
import boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="sealedfs-test")
iam.put_user_policy(UserName="sealedfs-test", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="sealedfs-test")["AccessKey"]
# Signed from here on: a bucket for the end-to-end tests (each test uses
# its own random prefix in it).
signed = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
              aws_access_key_id=key["AccessKeyId"],
              aws_secret_access_key=key["SecretAccessKey"])
boto3.client("s3", **signed).create_bucket(Bucket="sealedfs-e2e")
# KMS keyslots: a key with an alias, and a user that may use the bucket
# and encrypt with KMS but is denied kms:Decrypt (the refusal test).
kms = boto3.client("kms", **signed)
kms_key = kms.create_key(Description="sealedfs e2e keyslots")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/sealedfs-e2e", TargetKeyId=kms_key)
iam = boto3.client("iam", **signed)
iam.create_user(UserName="sealedfs-nokms")
iam.put_user_policy(UserName="sealedfs-nokms", PolicyName="no-decrypt", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "kms:Encrypt", "kms:DescribeKey"], "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]}))
nokms = iam.create_access_key(UserName="sealedfs-nokms")["AccessKey"]
print(f"export SEALEDFS_TEST_S3_ENDPOINT={sys.argv[1]}")
print(f"export SEALEDFS_TEST_KMS_KEY={kms_key}")
print(f"export SEALEDFS_TEST_NOKMS_ACCESS_KEY_ID={nokms['AccessKeyId']}")
print(f"export SEALEDFS_TEST_NOKMS_SECRET_ACCESS_KEY={nokms['SecretAccessKey']}")
print("export SEALEDFS_TEST_S3_BUCKET=sealedfs-e2e")
print(f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']}")
print(f"export AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
print("export AWS_REGION=us-east-1")
PY
        show_tail "$dir/moto.log"
        s3_server_stop "$dir"
        die "could not create the test user on moto"
    }
    log "moto listening on 127.0.0.1:$port (pid $pid, log $dir/moto.log)"
}

# s3_server_stop DIR: stops the server that s3_server_start DIR started.
s3_server_stop() {
    local dir=$1 pid
    [[ -r $dir/pid ]] || return 0
    pid=$(cat "$dir/pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid"
}

# --- volumes on the S3 test server -----------------------------------------

# s3_test_volume STATE_DIR NAME: sets S3_VOLUME to s3://BUCKET/NAME-<random>
# on the test server and exports AWS_ENDPOINT_URL for sealedfs. Uses the
# server named by SEALEDFS_TEST_S3_ENDPOINT (scripts/test.sh starts one);
# without it starts moto in STATE_DIR (stop it with s3_server_stop), so the
# scripts also run on their own. A fresh prefix per run: moto keeps every
# object of a run in memory, and a prefix is never shared between runs.
s3_test_volume() {
    local state=$1 name=$2
    if [[ -z ${SEALEDFS_TEST_S3_ENDPOINT:-} ]]; then
        s3_server_start "$state"
        # shellcheck disable=SC1091 # written by s3_server_start
        . "$state/env"
    fi
    [[ -n ${SEALEDFS_TEST_S3_BUCKET:-} ]] || die "SEALEDFS_TEST_S3_ENDPOINT is set but SEALEDFS_TEST_S3_BUCKET is not"
    export AWS_ENDPOINT_URL=$SEALEDFS_TEST_S3_ENDPOINT
    # shellcheck disable=SC2034 # read by the caller
    S3_VOLUME=s3://$SEALEDFS_TEST_S3_BUCKET/$name-$$-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
}
