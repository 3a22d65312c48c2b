"""The chat page at / in a real headless Chromium (Debian's chromium, driven by Playwright): a
message typed and sent gets a streamed reply from the default model, rendered as Markdown; Stop
ends a reply while it streams (the server counts the request as aborted) and the page goes on;
a server with an API key is reached once the key is given. Screenshots are saved by the test."""
import shutil
import time
import urllib.request

import pytest

from kiln_server import KilnServer, scrape
from conftest import MAIN_JOB_ARGS

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    assert CHROMIUM, "Debian's chromium is missing (scripts/install_system.sh installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(kiln_bin, smollm2_gguf):
    srv = KilnServer(kiln_bin, smollm2_gguf, *MAIN_JOB_ARGS, "--max-model-len", "4096",
                     served_name="smollm2")
    yield srv
    srv.stop()


def wait_until(condition, what, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def assistant_texts(page):
    return page.locator(".msg.assistant").all_inner_texts()


def test_the_page_is_served_whole_from_the_binary(server):
    with urllib.request.urlopen(server.base_url + "/", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        html = r.read().decode()
    assert "<title>Kiln chat</title>" in html and "/v1/chat/completions" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # nothing from elsewhere
    assert "https://" not in html


def test_a_message_gets_a_streamed_reply_and_stop_works(browser, server, tmp_path):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.base_url + "/")
    # The page runs under its own Content-Security-Policy, so the test waits on selectors and
    # reads text instead of evaluating script in it.
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("#model").input_value() == "smollm2"
    page.fill("#input", "What is the capital of France? Answer in one sentence.")
    page.click("#send")
    page.wait_for_selector(".msg.assistant .meta", timeout=120_000)
    reply = assistant_texts(page)[0]
    assert "tokens/s" in reply and reply.split("\n")[0].strip(), reply
    page.screenshot(path=str(tmp_path / "chat-reply.png"), full_page=True)
    assert (tmp_path / "chat-reply.png").stat().st_size > 1000

    # A reply that would run for thousands of tokens, stopped while it streams.
    aborted_before = scrape(server.base_url, "smollm2").get(
        ("vllm:request_success_total", (("finished_reason", "abort"),)), 0)
    page.click("#toggle-settings")
    page.fill("#max-tokens", "3500")
    page.fill("#extra", '{"ignore_eos": true}')
    page.fill("#input", "Tell me a very long story about a dragon.")
    page.click("#send")
    wait_until(lambda: len(assistant_texts(page)) == 2 and len(assistant_texts(page)[1]) > 100,
               "the long reply streaming")
    assert page.is_enabled("#stop")
    page.click("#stop")
    page.wait_for_selector(".msg.assistant:nth-of-type(4) .meta", timeout=30_000)
    stopped = assistant_texts(page)[1]
    assert "stopped" in stopped.split("\n")[-1], stopped
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    server.wait_for(lambda: scrape(server.base_url, "smollm2").get(
        ("vllm:request_success_total", (("finished_reason", "abort"),)), 0) == aborted_before + 1,
        "the stopped request counted as aborted")
    page.screenshot(path=str(tmp_path / "chat-stopped.png"), full_page=True)

    # The page goes on: the next message is answered.
    page.fill("#extra", "")
    page.fill("#max-tokens", "40")
    page.fill("#input", "Say hello.")
    page.click("#send")
    wait_until(lambda: page.locator(".msg.assistant .meta").count() == 3, "the next answer")
    assert errors == []
    page.close()


def test_markdown_is_rendered_and_html_is_not_injected(browser, server):
    # Evaluating the page's renderer from the test needs eval, which the page's policy forbids.
    page = browser.new_context(bypass_csp=True).new_page()
    page.goto(server.base_url + "/")
    html = page.evaluate("renderMarkdown('# Title\\n\\nSome **bold** and `code`.\\n\\n"
                         "```python\\nprint(1 < 2)\\n```\\n\\n- one\\n- two\\n"
                         "<img src=x onerror=alert(1)>')")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert '<pre><code class="language-python">print(1 &lt; 2)</code></pre>' in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert "<img" not in html and "&lt;img" in html
    page.close()


def test_a_server_with_an_api_key_is_reached_once_the_key_is_given(browser, kiln_bin,
                                                                   smollm2_gguf):
    srv = KilnServer(kiln_bin, smollm2_gguf, *MAIN_JOB_ARGS, "--max-model-len", "512",
                     "--api-key", "secret-key", served_name="smollm2")
    try:
        page = browser.new_page()
        page.goto(srv.base_url + "/")
        wait_until(lambda: "API key" in page.inner_text("#status"), "the page asking for the key")
        page.fill("#api-key", "secret-key")
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("#model option", state="attached")
        page.fill("#input", "Hi")
        page.click("#send")
        page.wait_for_selector(".msg.assistant .meta", timeout=120_000)
        assert "Error" not in assistant_texts(page)[0]
        page.close()
    finally:
        srv.stop()
