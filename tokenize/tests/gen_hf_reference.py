#!/usr/bin/env python3
"""Writes hf_reference.json: token counts of the corpus under the Qwen3, Llama 3 and DeepSeek V3
tokenizer.json files, computed by the reference implementation (Hugging Face `tokenizers`, the
Python package, version pinned below). The Rust tests compare our counts to these.

    pip install tokenizers==0.23.3 && ./scripts/fetch-tokenizers.sh && python3 tokenize/tests/gen_hf_reference.py
"""
import json
import os
import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
assert tokenizers.__version__ == "0.23.3", tokenizers.__version__


def cases():
    corpus = os.path.join(HERE, "corpus")
    out = {}
    for name in sorted(os.listdir(corpus)):
        text = open(os.path.join(corpus, name), encoding="utf-8").read()
        out[name] = text
        for i, line in enumerate(text.split("\n")):
            out[f"{name}:{i + 1}"] = line
    out["repeated-a"] = "a" * 20000
    out["repeated-space"] = " " * 5000
    out["repeated-newline"] = "\n" * 3000
    out["repeated-cjk"] = "好" * 5000
    out["repeated-emoji"] = "🙂" * 2000
    out["mixed-whitespace"] = " \t\n \r\n\t\t  \u00a0 \u3000x " * 500
    out["digits"] = "1234567890" * 500
    out["empty"] = ""
    out["chatml"] = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    out["llama3"] = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n")
    out["deepseek_v3"] = "<｜begin▁of▁sentence｜>Be brief.<｜User｜>hi<｜Assistant｜>"
    return out


result = {"reference": f"tokenizers {tokenizers.__version__} (Python)", "models": {}}
texts = cases()
for model in ["qwen3", "llama3", "deepseek_v3"]:
    tok = Tokenizer.from_file(os.path.join(ROOT, ".models", "tokenizers", f"{model}.json"))
    result["models"][model] = {k: len(tok.encode(v, add_special_tokens=False).ids) for k, v in texts.items()}
with open(os.path.join(HERE, "hf_reference.json"), "w") as f:
    json.dump(result, f, indent=0, sort_keys=True, ensure_ascii=False)
print("wrote", sum(len(v) for v in result["models"].values()), "counts")
