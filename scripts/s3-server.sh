#!/usr/bin/env bash
# A real S3-protocol server for the tests: moto's server, on 127.0.0.1,
# with its authentication switched on.
#
#   scripts/s3-server.sh install        moto[server] into its own venv (reused if present)
#   scripts/s3-server.sh start DIR      start it on a free port; prints shell exports:
#                                       SEALEDFS_TEST_S3_ENDPOINT, SEALEDFS_TEST_S3_BUCKET,
#                                       AWS_ACCESS_KEY_ID,
#                                       AWS_SECRET_ACCESS_KEY, AWS_REGION
#                                       (DIR holds its pid, log and env file)
#   scripts/s3-server.sh stop DIR       stop the server started with DIR
#
# Usage from a shell:  eval "$(scripts/s3-server.sh start /tmp/s3)"
#
# Authentication: moto checks signatures only after INITIAL_NO_AUTH_ACTION_COUNT
# unauthenticated actions. The first three create an IAM user, give it an
# allow-all inline policy and an access key; every later request must be
# signed with that key, so a wrong secret really gets 403.
# moto keeps every object in memory: a stopped server forgets everything.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="s3-server"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

case ${1:-} in
install) s3_server_install ;;
start)
    [[ -n ${2:-} ]] || die "usage: $0 start DIR"
    s3_server_start "$2"
    cat "$2/env"
    ;;
stop)
    [[ -n ${2:-} ]] || die "usage: $0 stop DIR"
    s3_server_stop "$2"
    ;;
-h | --help | "")
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    ;;
*) die "unknown command: $1 (see --help)" ;;
esac
