#!/usr/bin/env bash
# Builds the input pairs of the delta benchmark (crates/sevenfold-bench/src/bin/delta.rs):
#   blink-1.wasm / blink-2.wasm        the sample app, rebuilt after a small code change
#                                      (the LED period and one log line);
#   telemetry-1.wasm / telemetry-2.wasm the same for the telemetry app;
#   sevenfold-1 / sevenfold-2          the `sevenfold` executable (stripped), built from
#                                      this tree and again after a one-line change in the
#                                      agent's update module (PROFILE=release for a release
#                                      build; the default `dev` profile takes minutes, not half an hour).
# Usage: scripts/delta-bench-inputs.sh OUT_DIR   (run from the repository root)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
profile=${PROFILE:-dev}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The wasm apps, from a copy of apps/ (the tree itself is not touched).
cp -r apps "$work/apps"
wasm() {
    cargo build -q --release --target wasm32-wasip1 --manifest-path "$work/apps/Cargo.toml" \
        --target-dir "$target/apps" -p blink -p telemetry
}
wasm
for app in blink telemetry; do cp "$target/apps/wasm32-wasip1/release/$app.wasm" "$out/$app-1.wasm"; done
sed -i 's/from_millis(20)/from_millis(25)/; s/blink: done after/blink: finished after/' "$work/apps/blink/src/main.rs"
sed -i '0,/println!("telemetry/s//println!("telemetry v2/' "$work/apps/telemetry/src/main.rs"
wasm
for app in blink telemetry; do cp "$target/apps/wasm32-wasip1/release/$app.wasm" "$out/$app-2.wasm"; done
# Rebuild the real apps so the next build of the workspace embeds the originals.
touch apps/blink/src/main.rs apps/telemetry/src/main.rs

# 2. The runtime executable, before and after a one-line change.
dir=debug; [ "$profile" = release ] && dir=release
cargo build -q --profile "$profile" -p sevenfold-cli --bin sevenfold
strip -o "$out/sevenfold-1" "$target/$dir/sevenfold"
file=crates/sevenfold-agent/src/update/mod.rs
cp "$file" "$work/mod.rs.orig"
trap 'cp "$work/mod.rs.orig" "$file"; rm -rf "$work"' EXIT
sed -i 's/"update installed and committed"/"update installed and committed (v2)"/' "$file"
cargo build -q --profile "$profile" -p sevenfold-cli --bin sevenfold
strip -o "$out/sevenfold-2" "$target/$dir/sevenfold"
cp "$work/mod.rs.orig" "$file"
ls -l "$out"
