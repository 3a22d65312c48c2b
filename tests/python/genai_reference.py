"""onnxruntime-genai as a reference, run in a process of its own.

The library loads its own copy of ONNX Runtime, named by ORT_LIB_PATH (the onnxruntime wheel's
library), which must not meet the copy the test process has loaded; so each function here runs
this file as a script and reads back its last line of output as JSON."""
import json
import os
import pathlib
import subprocess
import sys


def _run(command, folder, payload):
    import onnxruntime as ort
    lib = pathlib.Path(ort.__file__).parent / "capi" / f"libonnxruntime.so.{ort.__version__}"
    assert lib.exists(), lib
    proc = subprocess.run([sys.executable, __file__, command, str(folder), json.dumps(payload)],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, ORT_LIB_PATH=str(lib)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def greedy(folder, prompts, n):
    """For each prompt (token ids), up to `n` greedy tokens from onnxruntime-genai's Generator
    and their text: [{"tokens": [...], "text": "..."}]."""
    return _run("greedy", folder, {"prompts": prompts, "n": n})


def engine_greedy(folder, prompts, n):
    """Up to `n` greedy tokens per prompt, all prompts submitted at once to its og.Engine."""
    return _run("engine_greedy", folder, {"prompts": prompts, "n": n})


def prompt_logprobs(folder, prompt):
    """log_softmax of the logits at each position of `prompt`, at the token that follows it."""
    return _run("prompt_logprobs", folder, {"prompt": prompt})


def _main(command, folder, payload):
    import numpy as np
    import onnxruntime_genai as og
    model = og.Model(folder)

    def generator_for(prompt, max_length):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=max_length, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(np.array(prompt, dtype=np.int32))
        return generator

    if command == "greedy":
        out = []
        for prompt in payload["prompts"]:
            generator = generator_for(prompt, len(prompt) + payload["n"])
            tokens = []
            while not generator.is_done():
                generator.generate_next_token()
                tokens.append(int(generator.get_next_tokens()[0]))
            text = og.Tokenizer(model).decode(np.array(tokens, dtype=np.int32))
            out.append({"tokens": tokens, "text": text})
        return out
    if command == "engine_greedy":
        engine = og.Engine(model)
        requests = []
        for prompt in payload["prompts"]:
            request = engine.create_request()
            options = og.TurnOptions(request)
            options.set_max_generated_tokens(payload["n"])
            options.set_do_sample(False)
            request.begin_turn(np.array(prompt, dtype=np.int32), options)
            requests.append(request)
        events = engine.create_event_buffer(64)
        tokens = [[] for _ in requests]
        while engine.has_pending_requests():
            for event in engine.run(events):
                if int(event.flags) & int(og.EngineEventFlags.TOKEN):
                    i = next(k for k, r in enumerate(requests) if event.request == r)
                    tokens[i].append(int(event.token))
        return tokens
    if command == "prompt_logprobs":
        prompt = payload["prompt"]
        generator = generator_for(prompt, len(prompt) + 1)
        logits = np.asarray(generator.get_output("logits"), dtype=np.float64)[0]
        m = logits.max(axis=-1, keepdims=True)
        logprobs = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
        return [float(logprobs[i, prompt[i + 1]]) for i in range(len(prompt) - 1)]
    raise ValueError(command)


if __name__ == "__main__":
    print(json.dumps(_main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
