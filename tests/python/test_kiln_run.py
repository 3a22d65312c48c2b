"""`kiln run` driven through a real terminal (a tmux pane): a question typed at the prompt gets a
streamed answer from the default model, Ctrl-C during a reply stops the reply and not the
program, the conversation and /commands work, and /bye leaves with status 0."""
import os
import re
import subprocess
import time

import pytest

from test_catalog import store


class Pane:
    """A tmux session of its own (its own server socket), 200 x 50, running one command."""

    def __init__(self, tmp_path, command):
        self.tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
        subprocess.run(self.tmux + ["new-session", "-d", "-s", "run", "-x", "200", "-y", "50",
                                    command], check=True)

    def text(self):
        res = subprocess.run(self.tmux + ["capture-pane", "-p", "-J", "-t", "run", "-S", "-500"],
                             capture_output=True, text=True)
        return res.stdout

    def send(self, *keys):
        subprocess.run(self.tmux + ["send-keys", "-t", "run", *keys], check=True)

    def wait_for(self, condition, what, timeout=120):
        deadline = time.time() + timeout
        while True:
            text = self.text()
            if condition(text):
                return text
            assert time.time() < deadline, f"not within {timeout} s: {what}\n{text}"
            time.sleep(0.05)

    def close(self):
        subprocess.run(self.tmux + ["kill-server"], capture_output=True)


def prompts(text):
    return text.count(">>> ")


@pytest.fixture
def pane(kiln_bin, tmp_path, smollm2_gguf):
    home = store(tmp_path, smollm2_gguf=smollm2_gguf)
    command = (f"KILN_HOME={home} {kiln_bin} run smollm2-135m-vllm --max-model-len 4096 "
               f"--temperature 0 --max-tokens 100; echo EXITED:$?; sleep 600")
    p = Pane(tmp_path, command)
    yield p
    p.close()


def test_a_question_typed_at_the_prompt_gets_a_streamed_answer(pane):
    pane.wait_for(lambda t: prompts(t) == 1, "the first prompt")
    pane.send("What is the capital of France?", "Enter")
    text = pane.wait_for(lambda t: prompts(t) == 2, "the answer and the next prompt")
    answer = text.split("What is the capital of France?")[1].split(">>> ")[0].strip()
    assert answer, text
    # The conversation is kept: a follow-up sees the first exchange; /clear forgets it.
    pane.send("/show", "Enter")
    pane.wait_for(lambda t: "conversation: 2 messages" in t, "/show counting two messages")
    pane.send("/clear", "Enter")
    pane.wait_for(lambda t: "Cleared the conversation." in t, "/clear")
    pane.send("/set verbose on", "Enter")
    pane.send("Say hello.", "Enter")
    pane.wait_for(lambda t: re.search(r"\[\d+ tokens, first after [\d.]+ s, [\d.]+ tokens/s\]", t),
                  "tokens per second after the reply")
    pane.send("/bye", "Enter")
    pane.wait_for(lambda t: "EXITED:0" in t, "kiln run leaving with status 0")


def test_ctrl_c_stops_the_reply_not_the_program(pane):
    pane.wait_for(lambda t: prompts(t) == 1, "the first prompt")
    # A reply that would run for thousands of tokens: it is still streaming when Ctrl-C comes.
    pane.send("/set ignore_eos true", "Enter")
    pane.send("/set max_tokens 3500", "Enter")
    pane.wait_for(lambda t: "Set max_tokens." in t, "the settings")
    pane.send("Tell me a long story about a dragon.", "Enter")
    before = pane.wait_for(
        lambda t: len(t.split("about a dragon.")[-1].strip()) > 80, "the reply streaming")
    pane.send("C-c")
    text = pane.wait_for(lambda t: "[stopped]" in t and prompts(t.split("[stopped]")[-1]) == 1,
                         "the reply stopped and a new prompt")
    assert "EXITED" not in text
    streamed = text.split("about a dragon.")[-1].split("[stopped]")[0]
    assert len(streamed.strip()) >= len(before.split("about a dragon.")[-1].strip())
    assert len(streamed.split()) < 3000  # stopped long before its 3,500 tokens
    # The program goes on: another question is answered.
    pane.send("/set ignore_eos false", "Enter")
    pane.send("/set max_tokens 30", "Enter")
    pane.send("What is two plus two?", "Enter")
    pane.wait_for(lambda t: prompts(t.split("two plus two?")[-1]) == 1 and
                  t.split("two plus two?")[-1].split(">>> ")[0].strip(), "the next answer")
    # Ctrl-C at the prompt does not leave either; Ctrl-D does.
    pane.send("C-c")
    pane.wait_for(lambda t: "(Ctrl-D or /bye leaves)" in t, "the hint")
    pane.send("C-d")
    pane.wait_for(lambda t: "EXITED:0" in t, "kiln run leaving on Ctrl-D")
