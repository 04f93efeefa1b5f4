#!/usr/bin/env bash
# Build sealedfs and mount a demo volume: ./demo/vault (the store: a local
# directory of sealed objects) mounted at ./demo/mnt, with a few sample files.
# Re-running it remounts the existing demo volume.
#
# Passphrase: $SEALEDFS_PASSPHRASE, else "demo passphrase" (printed).
# On a fresh Debian machine, as root, it installs fuse3 if fusermount3 is missing.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME="demo"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$SEALEDFS_ROOT"

if ! command -v fusermount3 >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing fuse3 (fusermount3)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 >/dev/null
    else
        die "fusermount3 is missing: install it (Debian: sudo apt-get install fuse3) and re-run"
    fi
fi
command -v cargo >/dev/null || die "cargo is missing: install Rust >= 1.85 (e.g. with rustup) and re-run"

log "building (cargo build)"
cargo build
need_sealedfs

demo=$SEALEDFS_ROOT/demo
vault=$demo/vault
mnt=$demo/mnt
mkdir -p "$demo"
# Keep the demo out of git without touching the repository's .gitignore.
[[ -e $demo/.gitignore ]] || echo '*' >"$demo/.gitignore"

if [[ -z ${SEALEDFS_PASSPHRASE:-} ]]; then
    export SEALEDFS_PASSPHRASE="demo passphrase"
    log "passphrase: \"$SEALEDFS_PASSPHRASE\" (set SEALEDFS_PASSPHRASE to choose another)"
fi

# Re-running: unmount what an earlier run mounted, then mount again.
if is_mounted "$mnt"; then
    log "unmounting the earlier demo mount"
    "$SEALEDFS_BIN" unmount "$mnt" || force_unmount "$mnt" ||
        die "cannot unmount $mnt; try: fusermount3 -u -z $mnt"
fi
mkdir -p "$mnt"

if [[ -e $vault/volume ]]; then
    log "using the existing volume in $vault"
else
    [[ -z $(ls -A "$vault" 2>/dev/null) ]] ||
        die "$vault exists, is not empty and holds no volume; move it away and re-run"
    log "creating a volume in $vault"
    "$SEALEDFS_BIN" init "$vault"
fi

log "mounting it at $mnt"
SEALEDFS_LOG_FILE=$demo/sealedfs.log "$SEALEDFS_BIN" mount "$vault" "$mnt"
check_fuse_mounted "$mnt" || die "see $demo/sealedfs.log"

# Sample files: a text file, a directory of docs, a symlink and 4 MiB of
# random bytes (with its checksum, to check after a remount).
if [[ ! -e $mnt/samples ]]; then
    log "copying sample files in"
    mkdir -p "$mnt/samples/docs"
    printf 'Hello from sealedfs. Only ciphertext of this line is in %s.\n' "$vault" >"$mnt/samples/hello.txt"
    cp README.md LICENSE "$mnt/samples/docs/"
    cp docs/*.md "$mnt/samples/docs/" 2>/dev/null || true
    head -c 4M /dev/urandom >"$mnt/samples/random.bin"
    (cd "$mnt/samples" && sha256sum random.bin >random.bin.sha256)
    ln -s docs/README.md "$mnt/samples/readme-link"
fi

rel_mnt=${mnt#"$PWD"/}
rel_vault=${vault#"$PWD"/}
rel_bin=${SEALEDFS_BIN#"$PWD"/}
cat <<EOF

sealedfs demo volume mounted:
  store       $rel_vault   (volume header, sealed journal and data packs)
  mountpoint  $rel_mnt     (plain files; the daemon runs in the background)
  daemon log  demo/sealedfs.log

Browse it:
  ls -la $rel_mnt/samples
  cat $rel_mnt/samples/hello.txt
  (cd $rel_mnt/samples && sha256sum -c random.bin.sha256)
  find $rel_vault -type f | head          # opaque object names only
  grep -r "Hello from" $rel_vault || echo "no plaintext in the store"

Unmount it (commits everything first):
  $rel_bin unmount $rel_mnt
Mount it again: bash scripts/demo.sh
EOF
