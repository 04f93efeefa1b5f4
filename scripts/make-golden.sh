#!/usr/bin/env bash
# Make the golden volume tests/golden/v1: a small volume of this format
# version with a fixed tree, plus a manifest of what it must contain
# (GOLDEN_CIPHER=aes-256-gcm: a volume of that cipher suite;
# GOLDEN_ROTATE=1: then rotated once, so it is under key epoch 1).
# Run only when the format version changes (and then as tests/golden/vN):
# tests/e2e/golden.rs mounts every committed golden volume on every run,
# so a change that cannot read them fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-v1}
out=tests/golden/$version
[[ ! -e $out ]] || { echo "make-golden: $out exists; remove it first" >&2; exit 1; }
cargo build -q
bin=${CARGO_TARGET_DIR:-target}/debug/sealedfs
work=$(mktemp -d)
trap 'fusermount3 -u -z "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
export SEALEDFS_PASSPHRASE=golden
"$bin" init "$work/vault" --insecure-fast-kdf ${GOLDEN_CIPHER:+--cipher "$GOLDEN_CIPHER"} >/dev/null
mkdir "$work/mnt"
"$bin" mount "$work/vault" "$work/mnt"
m=$work/mnt
mkdir -p "$m/dir/sub"
printf 'hello golden\n' >"$m/hello.txt"
head -c 200000 /dev/urandom >"$m/dir/two-chunks.bin"
truncate -s 1000000 "$m/sparse"
printf 'middle' | dd of="$m/sparse" bs=1 seek=500000 conv=notrunc status=none
ln -s hello.txt "$m/link"
ln "$m/hello.txt" "$m/dir/hardlink"
setfattr -n user.golden -v value "$m/hello.txt"
chmod 0640 "$m/dir/two-chunks.bin"
touch -d '2020-02-02 02:02:02.123456789' "$m/hello.txt" "$m/dir/two-chunks.bin"
# A snapshot, so its record and pinned checkpoint formats are kept too.
"$bin" snapshot create "$work/vault" golden >/dev/null
(cd "$m" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/manifest"
(cd "$m" && find . -printf '%p %y %m %n %s %T@\n' | sort) >>"$work/manifest"
"$bin" unmount "$m"
if [[ -n ${GOLDEN_ROTATE:-} ]]; then
    "$bin" key rotate "$work/vault" >/dev/null
fi
mkdir -p tests/golden
cp -a "$work/vault" "$out"
cp "$work/manifest" "$out.manifest"
echo "make-golden: wrote $out and $out.manifest"
