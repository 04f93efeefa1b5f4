#!/usr/bin/env bash
# The whole sealedfs test suite, in order, stopping at the first failing stage:
#
#   fmt        cargo fmt --check
#   clippy     cargo clippy --all-targets -- -D warnings
#   build      cargo build                      (target/debug/sealedfs)
#   test       cargo test -- --test-threads=2   (unit tests and the e2e binary;
#              deadline SEALEDFS_TEST_TIMEOUT, default 1200 s). An S3 server
#              (moto, scripts/s3-server.sh) runs on 127.0.0.1 for this stage:
#              the S3 tests fail, never skip, without it.
#   pjdfstest  scripts/pjdfstest.sh             (fresh mount, -o allow_other)
#   fsx        scripts/fsx.sh                   (fresh mount, FSX_OPS per seed)
#
# Run as root (the mount tests mount FUSE file systems and switch users).
# pjdfstest and fsx must be installed: `bash .ci/run` does it once, or
#   cargo install --locked --root ~/.cache/sealedfs-tools pjdfstest@0.2.2 fsx@0.3.2
# (scripts look in ~/.cache/sealedfs-tools/bin by themselves).
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    fmt, clippy, build and cargo test only (no root needed)
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
if [[ $quick == 0 ]]; then
    need_root "the mount tests mount FUSE file systems and switch users; try --quick"
    need_tool fusermount3
    need_tool pjdfstest "$PJDFSTEST_VERSION"
    need_tool fsx "$FSX_VERSION"
fi
[[ -x $MOTO_VENV/bin/moto_server ]] ||
    die "missing tool: moto (the S3 test server). Install it once with \`bash .ci/run\` or \`scripts/s3-server.sh install\` (needs python3-venv)"

S3_STATE=$(mktemp -d "${TMPDIR:-/tmp}/sealedfs-s3.XXXXXX")
stop_s3() {
    s3_server_stop "$S3_STATE"
    rm -rf "$S3_STATE"
}
trap stop_s3 EXIT

stages=(fmt clippy build test)
[[ $quick == 1 ]] || stages+=(pjdfstest fsx)
declare -A took=()
suite_start=$SECONDS

run_stage() {
    case $1 in
    fmt)
        # Names the files only; `cargo fmt` fixes them.
        cargo fmt --all -- --check --files-with-diff || {
            echo "cargo fmt --check failed: run \`cargo fmt\` (files listed above)" >&2
            return 1
        }
        ;;
    clippy) cargo clippy --all-targets -- -D warnings ;;
    build) cargo build ;;
    test)
        s3_server_start "$S3_STATE"
        # shellcheck disable=SC1091 # written by s3_server_start
        . "$S3_STATE/env"
        # A deadline, so a deadlocked test fails the run instead of eating
        # CI's whole budget (timeout kills cargo and the test binaries).
        timeout --kill-after=30 "${SEALEDFS_TEST_TIMEOUT:-1200}" cargo test -- --test-threads=2 || {
            local rc=$?
            [[ $rc == 124 || $rc == 137 ]] &&
                echo "cargo test did not finish within ${SEALEDFS_TEST_TIMEOUT:-1200}s (SEALEDFS_TEST_TIMEOUT); a test hangs: look for 'has been running for over 60 seconds' above" >&2
            return "$rc"
        }
        ;;
    pjdfstest) bash scripts/pjdfstest.sh ;;
    fsx) bash scripts/fsx.sh ;;
    esac
}

summary() {
    local failed=${1:-} s n=0 passed=0
    echo
    echo "==== summary ===="
    for s in "${stages[@]}"; do
        n=$((n + 1))
        if [[ -n ${took[$s]:-} ]]; then
            printf '  %-10s ok      %4ss\n' "$s" "${took[$s]}"
            passed=$((passed + 1))
        elif [[ $s == "$failed" ]]; then
            printf '  %-10s FAILED\n' "$s"
        else
            printf '  %-10s not run\n' "$s"
        fi
    done
    if [[ -r $SEALEDFS_TEST_LOGS/pjdfstest-sealedfs.result && -n ${took[pjdfstest]:-} ]]; then
        echo "  pjdfstest: $(cat "$SEALEDFS_TEST_LOGS/pjdfstest-sealedfs.result")"
    fi
    echo "  total $((SECONDS - suite_start))s; mount test logs in $SEALEDFS_TEST_LOGS"
    if [[ -n $failed ]]; then
        echo "test suite FAILED at stage '$failed'"
        echo "stages: $passed passed, 1 failed"
    else
        echo "stages: $passed passed, 0 failed"
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
