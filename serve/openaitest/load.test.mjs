// Requests that last: a full queue (429 with Retry-After), a client that disconnects
// mid-stream (its session is freed), /metrics, and SIGTERM during a stream. These use a
// random-weight model of the stories42M shape, whose greedy text runs to the end of its
// 1024-token context without an end token, so a request lasts as long as max_tokens says.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { client, metrics, request, sleep, slowModel, startServer, streamRequest } from './helpers.mjs';

const prompt = 'Once upon a time';
let slow;

before(() => {
  slow = slowModel();
});

after(() => {
  slow?.cleanup();
});

async function server(t, args) {
  const srv = await startServer({ modelPath: slow.file, args });
  t.after(() => srv.stop());
  return srv;
}

test('429: a full queue is RateLimitError with Retry-After', { timeout: 60000 }, async (t) => {
  const srv = await server(t, ['--parallel', '1', '--queue', '1']);
  const openai = client(srv);
  const id = 'stories42m.lmc';
  const results = await Promise.allSettled(
    Array.from({ length: 6 }, () => openai.completions.create({ model: id, prompt, max_tokens: 120, temperature: 0 })),
  );
  const ok = results.filter((r) => r.status === 'fulfilled');
  const limited = results.filter((r) => r.status === 'rejected');
  // One runs, one waits in the queue, the rest are turned away.
  assert.ok(ok.length >= 2, `${ok.length} of 6 succeeded: ${limited.map((r) => r.reason).join('; ')}`);
  assert.ok(limited.length >= 1, 'no request was turned away');
  for (const { reason: err } of limited) {
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.equal(err.status, 429);
    const retry = err.headers.get('retry-after');
    assert.ok(retry !== null, 'no Retry-After header');
    assert.ok(/^\d+$/.test(retry) ? Number(retry) >= 0 : !Number.isNaN(Date.parse(retry)), `Retry-After ${retry}`);
    assert.equal(typeof err.error?.message, 'string');
  }
  for (const { value: r } of ok) {
    assert.equal(r.usage.completion_tokens, 120);
  }
  // Served again once the burst is over.
  const r = await openai.completions.create({ model: id, prompt, max_tokens: 2 });
  assert.equal(r.usage.completion_tokens, 2);
});

test('a client that aborts a stream frees its session', { timeout: 60000 }, async (t) => {
  const srv = await server(t, ['--parallel', '1']);
  const openai = client(srv);
  const id = 'stories42m.lmc';
  const maxTokens = 1000;
  const ac = new AbortController();
  const start = performance.now();
  const stream = await openai.completions.create({ model: id, prompt, max_tokens: maxTokens, temperature: 0, stream: true }, { signal: ac.signal });
  const abortAt = 25;
  let chunks = 0;
  let upToAbort;
  // The client ends the iteration, or throws its abort error.
  try {
    for await (const chunk of stream) {
      chunks++;
      if (chunk.choices[0]?.finish_reason) {
        assert.fail(`the stream finished (${chunk.choices[0].finish_reason}) before the abort`);
      }
      if (chunks === abortAt) {
        upToAbort = performance.now() - start;
        ac.abort();
      }
    }
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIUserAbortError || err.name === 'AbortError', String(err));
  }
  assert.ok(chunks >= abortAt);
  // Were the session still generating, the next request would wait for the rest of the
  // 1000 tokens, many times what the first 25 took; freed, it is answered at once (its
  // prompt and 4 tokens are less work than those 25).
  const t0 = performance.now();
  const r = await openai.completions.create({ model: id, prompt, max_tokens: 4, temperature: 0 });
  const took = performance.now() - t0;
  assert.equal(r.usage.completion_tokens, 4);
  const limit = Math.max(5 * upToAbort, 500);
  t.diagnostic(`the stream took ${upToAbort.toFixed(0)} ms to its abort, the next request ${took.toFixed(0)} ms (limit ${limit.toFixed(0)} ms)`);
  assert.ok(took < limit, `the next request took ${took.toFixed(0)} ms, the aborted stream ${upToAbort.toFixed(0)} ms for its first ${abortAt} chunks`);

  await t.test('/metrics: lmrun_requests_total, and lmrun_active_sequences back to 0', async (st) => {
    let m = await metrics(srv);
    assert.equal(m.status, 200, m.text);
    assert.match(m.text, /^lmrun_requests_total(\{[^}]*\})? /m);
    assert.match(m.text, /^lmrun_active_sequences(\{[^}]*\})? /m);
    for (let deadline = Date.now() + 5000; m.value('lmrun_active_sequences') !== 0 && Date.now() < deadline; ) {
      await sleep(50);
      m = await metrics(srv);
    }
    assert.equal(m.value('lmrun_active_sequences'), 0, m.text);
  });
});

test('SIGTERM during a stream: the stream ends with [DONE], new requests are refused, exit 0', { timeout: 60000 }, async (t) => {
  const srv = await server(t, ['--parallel', '1']);
  const maxTokens = 300;
  const r = await streamRequest(`${srv.url}/completions`, { prompt, max_tokens: maxTokens, temperature: 0 });
  assert.equal(r.status, 200);
  // Three events in (next(), not a for loop's break, which would close the response).
  const events = [];
  while (events.length < 3) {
    const { value, done } = await r.events.next();
    assert.ok(!done, 'the stream ended before SIGTERM');
    events.push(value);
  }
  srv.proc.kill('SIGTERM');
  // Give the server a moment to see the signal: it says so on stderr.
  for (let deadline = Date.now() + 2000; !/shutting down/i.test(srv.stderr()) && Date.now() < deadline; ) {
    await sleep(10);
  }

  // New requests: 503 or a refused connection, once the server has seen the signal (a
  // request that got in before that is answered; the running stream keeps it alive).
  let refused;
  for (let deadline = Date.now() + 10000; !refused; ) {
    try {
      const p = await request('POST', `${srv.url}/completions`, {
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt, max_tokens: 1 }),
      });
      if (p.status === 503) {
        assert.equal(typeof p.json?.error?.message, 'string', p.text);
        refused = '503';
      } else {
        assert.equal(p.status, 200, `a request during shutdown: ${p.status} ${p.text}`);
      }
    } catch (err) {
      // Refused; or reset, when the connection was in the listener's backlog as the
      // listener closed (a race of closing it, not a response of the server).
      assert.ok(['ECONNREFUSED', 'ECONNRESET'].includes(err.code), String(err));
      refused = err.code;
    }
    if (!refused) {
      assert.ok(Date.now() < deadline, 'requests were still served 10 s after SIGTERM');
      await sleep(20);
    }
  }
  t.diagnostic(`a new request during shutdown: ${refused}`);
  // The official client sees the same: APIConnectionError, or a 503 APIError.
  const err = await client(srv)
    .completions.create({ model: 'stories42m.lmc', prompt, max_tokens: 1 })
    .then(
      () => assert.fail('a request after SIGTERM succeeded'),
      (e) => e,
    );
  assert.ok(err instanceof OpenAI.APIConnectionError || (err instanceof OpenAI.APIError && err.status === 503), String(err));

  // The running stream still ends cleanly.
  for await (const e of r.events) {
    events.push(e);
  }
  assert.equal(events.at(-1), '[DONE]', `the stream ended with ${events.at(-1)}`);
  const last = JSON.parse(events.at(-2));
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.equal(last.usage.completion_tokens, maxTokens);

  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ code: 'no exit in 30 s' }), 30000);
  });
  const { code, signal } = await Promise.race([srv.exited, timeout]);
  clearTimeout(timer);
  assert.equal(code, 0, `exit code ${code}, signal ${signal}\n${srv.stderr()}`);
});
