"""llama.cpp's server (the xllamacpp wheel) as the reference for GGUF files: started in-process,
and greedy runs in near_tie.py's shape."""
import xllamacpp


def start(gguf_path, n_ctx=512, threads=2):
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path)
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    return xllamacpp.Server(params)


def greedy_run(server, ids, n_predict, top):
    """{"tokens": [...], "logprobs": [[chosen, [[token, logprob], ...top]], ...]} for `n_predict`
    greedy tokens after the token ids `ids` (llama.cpp lists the end token it stops at)."""
    res = server.handle_completions({"prompt": ids, "n_predict": n_predict, "temperature": 0,
                                     "n_probs": top, "cache_prompt": False})
    content = res["choices"][0]["logprobs"]["content"]
    return {"tokens": [c["id"] for c in content],
            "logprobs": [[c["logprob"], [[t["id"], t["logprob"]] for t in c["top_logprobs"]]]
                         for c in content]}
