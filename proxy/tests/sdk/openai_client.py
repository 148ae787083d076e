"""The official `openai` SDK as a client of the gateway, for the Rust tests (tests/tls.rs).

    openai_client.py chat BASE_URL CA_FILE http1|http2
        one chat completion and one streamed, printed as JSON with the HTTP version used
    openai_client.py cert BASE_URL CA_FILE
        a short digest of the certificate the server presents to a new connection
    openai_client.py load BASE_URL CA_FILE SECONDS THREADS
        chat completions for SECONDS on THREADS threads, each on a new connection (a new TLS
        handshake); prints ok/failed counts, the errors, and the server certificates seen
    openai_client.py cache BASE_URL QUESTION KINDS
        QUESTION asked once per item of KINDS (e.g. json,stream,stream: a chat completion or a
        stream with usage): each answer's text, finish reason, x-tollgate-cache header and
        cached prompt tokens as the SDK parsed them (tests/cache.rs)
    openai_client.py search BASE_URL MODEL QUESTION
        QUESTION asked of MODEL once as a chat completion and once streamed, with
        web_search_options: each answer's x-tollgate-search header, text and the references the
        SDK exposes (`model_extra` of the completion and of the stream's chunks) (tests/search/)
"""

import hashlib
import json
import sys
import threading
import time

import httpx
import openai

MESSAGES = [{"role": "user", "content": "Say hello."}]


def client(base_url, ca, http2):
    return openai.OpenAI(
        base_url=base_url,
        api_key="sk-test-not-a-real-key",
        max_retries=0,
        http_client=httpx.Client(verify=ca, http2=http2, timeout=30),
    )


def chat(base_url, ca, version):
    c = client(base_url, ca, version == "http2")
    raw = c.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    whole = raw.parse()
    streamed = []
    with c.chat.completions.with_streaming_response.create(
        model="m", messages=MESSAGES, stream=True
    ) as resp:
        stream_version = resp.http_response.http_version
        for chunk in resp.parse():
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    streamed.append(choice.delta.content)
    print(
        json.dumps(
            {
                "http_version": raw.http_response.http_version,
                "stream_http_version": stream_version,
                "text": whole.choices[0].message.content,
                "usage": whole.usage.total_tokens if whole.usage else None,
                "stream_text": "".join(streamed),
            }
        )
    )


def cert_digest(response):
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream else None
    der = ssl_object.getpeercert(True) if ssl_object else b""
    return hashlib.sha256(der).hexdigest()[:16]


def cert(base_url, ca):
    with httpx.Client(verify=ca) as http:
        print(cert_digest(http.get(base_url.removesuffix("/v1") + "/healthz")))


def load(base_url, ca, seconds, threads):
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    result = {"ok": 0, "failed": 0, "errors": [], "certificates": []}

    def worker():
        while time.monotonic() < stop:
            http = httpx.Client(verify=ca, http2=False, timeout=30)
            c = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, http_client=http)
            try:
                raw = c.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
                raw.parse()
                digest = cert_digest(raw.http_response)
                with lock:
                    result["ok"] += 1
                    if not result["certificates"] or result["certificates"][-1] != digest:
                        result["certificates"].append(digest)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    result["failed"] += 1
                    result["errors"].append(repr(e)[:200])
            finally:
                http.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps(result))


def cache(base_url, question, kinds):
    c = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    messages = [{"role": "user", "content": question}]
    answers = []
    for kind in kinds.split(","):
        if kind == "json":
            raw = c.chat.completions.with_raw_response.create(model="m", messages=messages)
            whole = raw.parse()
            details = whole.usage.prompt_tokens_details if whole.usage else None
            answers.append(
                {
                    "cache": raw.http_response.headers.get("x-tollgate-cache"),
                    "text": whole.choices[0].message.content,
                    "finish": whole.choices[0].finish_reason,
                    "cached_tokens": details.cached_tokens if details else None,
                }
            )
            continue
        with c.chat.completions.with_streaming_response.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        ) as resp:
            text, finish, cached = [], None, None
            for chunk in resp.parse():
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        text.append(choice.delta.content)
                    finish = choice.finish_reason or finish
                if chunk.usage and chunk.usage.prompt_tokens_details:
                    cached = chunk.usage.prompt_tokens_details.cached_tokens
            answers.append(
                {
                    "cache": resp.http_response.headers.get("x-tollgate-cache"),
                    "text": "".join(text),
                    "finish": finish,
                    "cached_tokens": cached,
                }
            )
    print(json.dumps(answers))


def guard(base_url, model, question, reply, kinds):
    """Ask through guardrails: the text and finish reason read by the SDK, or the error it raised."""
    c = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    messages = [{"role": "user", "content": question}]
    headers = {"x-mock-reply": reply} if reply else {}
    out = []
    for kind in kinds.split(","):
        try:
            if kind == "json":
                r = c.chat.completions.create(model=model, messages=messages, extra_headers=headers)
                out.append({"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason})
                continue
            text, finish = [], None
            for chunk in c.chat.completions.create(model=model, messages=messages, stream=True, extra_headers=headers):
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        text.append(choice.delta.content)
                    finish = choice.finish_reason or finish
            out.append({"text": "".join(text), "finish": finish})
        except openai.APIStatusError as e:
            body = e.body if isinstance(e.body, dict) else {}
            out.append({"status": e.status_code, "code": body.get("code")})
    print(json.dumps(out))


def stream(base_url, model):
    """Stream one answer: the text read, and how it ended (a finish reason, or the error raised)."""
    c = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    text, finish = [], None
    try:
        for chunk in c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    text.append(choice.delta.content)
                finish = choice.finish_reason or finish
    except openai.APIError as e:
        body = e.body if isinstance(e.body, dict) else {}
        print(json.dumps({"text": "".join(text), "error": type(e).__name__, "code": body.get("code")}))
        return
    except Exception as e:  # a transport error: still not a complete answer
        print(json.dumps({"text": "".join(text), "error": type(e).__name__, "code": None}))
        return
    print(json.dumps({"text": "".join(text), "finish": finish}))



def search(base_url, model, question):
    c = openai.OpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    messages = [{"role": "user", "content": question}]
    options = {"search_context_size": "low"}
    raw = c.chat.completions.with_raw_response.create(model=model, messages=messages, web_search_options=options)
    whole = raw.parse()
    answers = [
        {
            "search": raw.http_response.headers.get("x-tollgate-search"),
            "text": whole.choices[0].message.content,
            "references": (whole.model_extra or {}).get("references"),
        }
    ]
    with c.chat.completions.with_streaming_response.create(
        model=model, messages=messages, web_search_options=options, stream=True
    ) as resp:
        text, references = [], None
        for chunk in resp.parse():
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    text.append(choice.delta.content)
            extra = chunk.model_extra or {}
            if "references" in extra:
                references = extra["references"]
        answers.append(
            {"search": resp.http_response.headers.get("x-tollgate-search"), "text": "".join(text), "references": references}
        )
    print(json.dumps(answers))

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "chat":
        chat(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "cert":
        cert(sys.argv[2], sys.argv[3])
    elif mode == "load":
        load(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    elif mode == "cache":
        cache(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "guard":
        guard(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
    elif mode == "stream":
        stream(sys.argv[2], sys.argv[3])
    elif mode == "search":
        search(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
