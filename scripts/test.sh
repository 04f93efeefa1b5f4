#!/usr/bin/env bash
# The whole sealedfs test suite, in order, stopping at the first failing stage:
#
#   setup      install what is missing and nothing else (a second run
#              installs nothing): Debian packages (as root, apt-get),
#              pjdfstest and fsx from crates.io into SEALEDFS_TOOLS (default
#              ~/.cache/sealedfs-tools), moto into SEALEDFS_TOOLS/moto-venv
#   fmt        cargo fmt --check
#   clippy     cargo clippy --all-targets -- -D warnings
#   build      cargo build --all-targets        (target/debug/sealedfs and the
#              test binaries, with the features `cargo test` resolves, so
#              the test stage compiles nothing again)
#   test       cargo test -- --test-threads=2   (unit tests and the e2e binary;
#              deadline SEALEDFS_TEST_TIMEOUT, default 1200 s; output also in
#              SEALEDFS_TEST_LOGS/cargo-test.log)
#   pjdfstest  scripts/pjdfstest.sh             (fresh mount, -o allow_other)
#   pjdfstest-s3  scripts/pjdfstest.sh --s3     (the same on an S3 volume;
#              minimum in tests/pjdfstest-s3.expected)
#   fsx        scripts/fsx.sh                   (fresh mount, FSX_OPS per seed)
#   fsx-s3     scripts/fsx.sh --s3              (FSX_S3_SEEDS, default "1 2",
#              FSX_S3_OPS per seed, default 20000)
#   fips       the FIPS suite (AES-256-GCM, PBKDF2-SHA256) on the same tests:
#              every unit test, the core e2e scenarios (round trips, tamper,
#              crash, rotation, golden volumes) on both stores, and fsx
#              (FSX_FIPS_OPS, default 20000), all with
#              SEALEDFS_TEST_CIPHER=aes-256-gcm
#
# An S3 server (moto, scripts/s3-server.sh) runs on 127.0.0.1 during the
# test, pjdfstest-s3 and fsx-s3 stages, a fresh one for each (moto keeps
# every object in memory): the S3 tests fail, never skip, without it.
#
# Run as root (the mount tests mount FUSE file systems and switch users;
# setup installs packages). Needs Rust >= 1.85 with rustfmt and clippy, and
# the network to package registries the first time.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    setup (without pjdfstest and fsx; packages only
#                              as root), fmt, clippy, build and cargo test
#                              (no root needed)
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="test"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$SEALEDFS_ROOT"

quick=0
case ${1:-} in
"") ;;
--quick) quick=1 ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument: $1 (see --help)" ;;
esac

# --- tools first, so a missing one is named before a long build --------------
command -v cargo >/dev/null || die "missing tool: cargo (Rust >= 1.85; e.g. via rustup)"
cargo fmt --version >/dev/null 2>&1 || die "missing tool: rustfmt (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || die "missing tool: clippy (rustup component add clippy)"
[[ $quick == 1 ]] ||
    need_root "the mount tests mount FUSE file systems and switch users; try --quick"

S3_STATE=$(mktemp -d "${TMPDIR:-/tmp}/sealedfs-s3.XXXXXX")
stop_s3() {
    s3_server_stop "$S3_STATE"
    rm -rf "$S3_STATE"
}
trap stop_s3 EXIT

stages=(setup fmt clippy build test)
[[ $quick == 1 ]] || stages+=(pjdfstest pjdfstest-s3 fsx fsx-s3 fips)
declare -A took=()
suite_start=$SECONDS

run_stage() {
    case $1 in
    setup)
        # In subshells: their `die` fails the stage, not the whole script.
        (install_test_deps "$quick") || return 1
        tools_on_path
        [[ $quick == 1 ]] || (
            need_tool fusermount3
            need_tool pjdfstest "$PJDFSTEST_VERSION"
            need_tool fsx "$FSX_VERSION"
        )
        ;;
    fmt)
        # Names the files only; `cargo fmt` fixes them.
        cargo fmt --all -- --check --files-with-diff || {
            echo "cargo fmt --check failed: run \`cargo fmt\` (files listed above)" >&2
            return 1
        }
        ;;
    clippy) cargo clippy --all-targets -- -D warnings ;;
    build) cargo build --all-targets ;;
    test) with_s3 cargo_test ;;
    pjdfstest) bash scripts/pjdfstest.sh ;;
    pjdfstest-s3) with_s3 bash scripts/pjdfstest.sh --s3 ;;
    fsx) bash scripts/fsx.sh ;;
    fsx-s3) FSX_OPS=${FSX_S3_OPS:-20000} FSX_SEEDS=${FSX_S3_SEEDS:-1 2} with_s3 bash scripts/fsx.sh --s3 ;;
    fips) SEALEDFS_TEST_CIPHER=aes-256-gcm fips_suite ;;
    esac
}

# with_s3 CMD...: CMD with a fresh moto on 127.0.0.1 and its exports
# (SEALEDFS_TEST_S3_*, AWS_*), in a subshell so that no stage sees the
# address of a server that is gone.
with_s3() {
    local rc=0
    (
        s3_server_start "$S3_STATE"
        # shellcheck disable=SC1091 # written by s3_server_start
        . "$S3_STATE/env"
        "$@"
    ) || rc=$?
    s3_server_stop "$S3_STATE"
    return "$rc"
}

cargo_test() {
    mkdir -p "$SEALEDFS_TEST_LOGS"
    # A deadline, so a deadlocked test fails the run instead of eating
    # CI's whole budget (timeout kills cargo and the test binaries). The
    # log feeds the totals in the summary.
    timeout --kill-after=30 "${SEALEDFS_TEST_TIMEOUT:-1200}" cargo test -- --test-threads=2 2>&1 |
        tee "$SEALEDFS_TEST_LOGS/cargo-test.log" || {
        local rc=$?
        [[ $rc == 124 || $rc == 137 ]] &&
            echo "cargo test did not finish within ${SEALEDFS_TEST_TIMEOUT:-1200}s (SEALEDFS_TEST_TIMEOUT); a test hangs: look for 'has been running for over 60 seconds' above" >&2
        return "$rc"
    }
}

# The FIPS suite: the tests whose meaning depends on the cipher, again on
# AES-256-GCM with PBKDF2 keyslots (the harness and sfs_init read
# SEALEDFS_TEST_CIPHER).
fips_suite() {
    export SEALEDFS_TEST_CIPHER
    with_s3 timeout --kill-after=30 "${SEALEDFS_TEST_TIMEOUT:-1200}" \
        cargo test --lib --test e2e -- --test-threads=2 \
        crypto:: data:: meta:: engine:: fs:: audit:: volume:: \
        roundtrip:: integrity:: smoke:: durability:: rotation:: golden:: 2>&1 |
        tee "$SEALEDFS_TEST_LOGS/cargo-test-fips.log" || return
    # Stages run under `if`, where `set -e` does not stop a function: every
    # step says its own failure.
    FSX_OPS=${FSX_FIPS_OPS:-20000} FSX_SEEDS=1 bash scripts/fsx.sh || return
}

# The summary ends with the real test totals (cargo's "test result:" lines
# summed, pjdfstest's and fsx's own counts), never a count of stages, which
# CI tooling could take for test counts.
summary() {
    local failed=${1:-} s state results=() cargo_log=$SEALEDFS_TEST_LOGS/cargo-test.log
    echo
    echo "==== summary ===="
    for s in "${stages[@]}"; do
        if [[ -n ${took[$s]:-} ]]; then
            state=passed
            printf '  %-13s passed  %4ss\n' "$s" "${took[$s]}"
        elif [[ $s == "$failed" ]]; then
            state=FAILED
            printf '  %-13s FAILED\n' "$s"
        else
            state="not run"
            printf '  %-13s not run\n' "$s"
        fi
        results+=("$s $state")
    done
    if [[ -n ${took[test]:-} || $failed == test ]] && [[ -r $cargo_log ]]; then
        # "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; ..."
        awk '/^test result: / {
                for (i = 1; i <= NF; i++) {
                    if ($(i + 1) ~ /^passed;?$/) p += $i
                    if ($(i + 1) ~ /^failed;?$/) f += $i
                    if ($(i + 1) ~ /^ignored;?$/) g += $i
                }
             }
             END { printf "  cargo test: %d passed, %d failed, %d ignored\n", p, f, g }' "$cargo_log"
    fi
    if [[ -n ${took[fips]:-} && -r $SEALEDFS_TEST_LOGS/cargo-test-fips.log ]]; then
        awk '/^test result: / { p += $4; f += $6 }
             END { printf "  cargo test (FIPS suite): %d passed, %d failed\n", p, f }' \
            "$SEALEDFS_TEST_LOGS/cargo-test-fips.log"
    fi
    local mode
    for mode in sealedfs s3; do
        local stage=pjdfstest
        [[ $mode == s3 ]] && stage=pjdfstest-s3
        if [[ -n ${took[$stage]:-} && -r $SEALEDFS_TEST_LOGS/pjdfstest-$mode.result ]]; then
            echo "  $stage: $(cat "$SEALEDFS_TEST_LOGS/pjdfstest-$mode.result")"
        fi
    done
    echo "  total $((SECONDS - suite_start))s; mount test logs in $SEALEDFS_TEST_LOGS"
    local IFS=,
    echo "stage results: ${results[*]}" | sed 's/,/, /g'
    if [[ -n $failed ]]; then
        echo "test suite FAILED at stage '$failed'"
    else
        echo "test suite passed"
    fi
}

i=0
for s in "${stages[@]}"; do
    i=$((i + 1))
    echo
    echo "==== [$i/${#stages[@]}] $s ===="
    start=$SECONDS
    if run_stage "$s"; then
        took[$s]=$((SECONDS - start))
    else
        rc=$?
        echo
        echo "FAILED: stage '$s' (exit $rc) after $((SECONDS - start))s"
        summary "$s"
        exit 1
    fi
done
summary
