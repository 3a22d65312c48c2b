// The official `openai` npm client, unmodified, against a running `kiln serve`
// (KILN_BASE_URL, e.g. http://127.0.0.1:8080/v1; KILN_MODEL names the served model and
// KILN_RUNTIME the runtime serving it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.KILN_BASE_URL, apiKey: 'unused', maxRetries: 0 });
const model = process.env.KILN_MODEL;

test('lists the served model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);
  const card = await client.models.retrieve(model);
  assert.equal(card.runtime, process.env.KILN_RUNTIME);
  assert.ok(card.context_length > 0);
});

test('chat completion with usage', async () => {
  const r = await client.chat.completions.create({
    model, temperature: 0, max_tokens: 20,
    // As tests/python/test_server_openai.py asks: a question whose first token is no near-tie.
    messages: [{ role: 'user', content: 'Name the capital of France.' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.match(r.choices[0].message.content, /Paris/);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('streamed chat equals the non-streamed one and reports usage', async () => {
  const messages = [{ role: 'user', content: 'Name a fruit.' }];
  // A warm-up leaves the prompt in the prefix cache, so both replies compared below are computed
  // the same way (a prompt taken from the cache may part from a fresh one at an int4 near-tie).
  await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 1 });
  const full = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 16 });
  const stream = await client.chat.completions.create({
    model, messages, temperature: 0, max_tokens: 16, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.delta.content ?? '';
  }
  assert.equal(text, full.choices[0].message.content);
  assert.equal(usage.completion_tokens, full.usage.completion_tokens);
});

test('completions, streamed and not', async () => {
  await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 1, temperature: 0 });
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  let streamed = '';
  for await (const chunk of await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true,
  })) {
    for (const c of chunk.choices) streamed += c.text;
  }
  assert.equal(streamed, r.choices[0].text);
});

test('bad requests surface as API errors with messages', async () => {
  await assert.rejects(
    client.chat.completions.create({ model, messages: [], max_tokens: 5 }),
    (e) => e.status === 400 && /at least one message/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404);
});
