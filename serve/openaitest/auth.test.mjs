// --api-key: a wrong or missing key is 401 (the client's AuthenticationError), the right
// one works, /health needs none.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { client, collect, modelID, request, startServer } from './helpers.mjs';

const key = 'test-key-1234';
let srv;

before(async () => {
  srv = await startServer({ args: ['--chat-template', 'chatml', '--api-key', key] });
});

after(async () => {
  await srv?.stop();
});

test('401: a wrong key is AuthenticationError on every endpoint', async () => {
  const openai = client(srv, { apiKey: 'wrong-key' });
  const calls = [
    () => openai.completions.create({ model: modelID, prompt: 'Once', max_tokens: 2 }),
    () => openai.chat.completions.create({ model: modelID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }),
    () => openai.chat.completions.create({ model: modelID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, stream: true }),
    () => openai.models.list(),
  ];
  for (const call of calls) {
    const err = await call().then(
      () => assert.fail('no error'),
      (e) => e,
    );
    assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
    assert.equal(err.status, 401);
    assert.equal(typeof err.error?.message, 'string');
  }
});

test('401: no Authorization header (raw HTTP)', async () => {
  const r = await request('POST', `${srv.url}/completions`, {
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once', max_tokens: 2 }),
  });
  assert.equal(r.status, 401);
  assert.equal(typeof r.json?.error?.message, 'string');
  const bad = await request('GET', `${srv.url}/models`, { headers: { Authorization: `Bearer ${key}x` } });
  assert.equal(bad.status, 401);
});

test('the right key works, streamed and not', async () => {
  const openai = client(srv, { apiKey: key });
  const r = await openai.completions.create({ model: modelID, prompt: 'Once upon a time', max_tokens: 3, temperature: 0 });
  assert.equal(r.usage.completion_tokens, 3);
  const s = await collect(
    await openai.chat.completions.create({ model: modelID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0, stream: true }),
    true,
  );
  assert.equal(s.finish, 'length');
  const ids = [];
  for await (const m of openai.models.list()) {
    ids.push(m.id);
  }
  assert.deepEqual(ids, [modelID]);
});

test('GET /health needs no key', async () => {
  const r = await request('GET', `${srv.base}/health`);
  assert.equal(r.status, 200);
});
