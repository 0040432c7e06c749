// The OpenAI API of lmrun serve as the official Node client and raw HTTP see it:
// completions and chat completions, streamed and not, usage, stop, seeds, models, and
// the 400, 404, 405 and 413 errors. One server of the stories260K fixture model.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  chatPromptTokens,
  client,
  collect,
  modelContext,
  modelID,
  request,
  startServer,
  streamRequest,
  tokenize,
} from './helpers.mjs';

const prompt = 'Once upon a time';
const messages = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];

let srv;
let openai;

before(async () => {
  srv = await startServer({ args: ['--chat-template', 'chatml', '--parallel', '2', '--queue', '16'] });
  openai = client(srv);
});

after(async () => {
  await srv?.stop();
});

describe('completions', () => {
  test('non-streamed: a text_completion with text, finish_reason and usage', async () => {
    const r = await openai.completions.create({ model: modelID, prompt, max_tokens: 8, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, modelID);
    assert.match(r.id, /\S/);
    assert.equal(typeof r.created, 'number');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.choices[0].text.length > 0, 'empty text');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  test('streamed: chunks of text, a finish_reason, usage on the last chunk', async () => {
    const stream = await openai.completions.create({ model: modelID, prompt, max_tokens: 8, temperature: 0, stream: true });
    const got = await collect(stream, false);
    assert.ok(got.chunks.length >= 2, `${got.chunks.length} chunks`);
    for (const c of got.chunks) {
      assert.equal(c.object, 'text_completion');
      assert.equal(c.model, modelID);
    }
    assert.ok(got.text.length > 0);
    assert.equal(got.finish, 'length');
    assert.equal(got.usage?.completion_tokens, 8);
  });

  test('max_tokens: finish_reason "length" and completion_tokens == max_tokens', async () => {
    for (const max_tokens of [1, 5, 12]) {
      const r = await openai.completions.create({ model: modelID, prompt, max_tokens, temperature: 0 });
      assert.equal(r.choices[0].finish_reason, 'length', `max_tokens ${max_tokens}`);
      assert.equal(r.usage.completion_tokens, max_tokens);
    }
  });

  test('usage.prompt_tokens is the tokenizer\'s count (lmrun tokenize, BOS included)', async () => {
    for (const p of [prompt, 'The little dog ran to the park and saw a big red ball.', 'x']) {
      const want = tokenize(p).length;
      const r = await openai.completions.create({ model: modelID, prompt: p, max_tokens: 2, temperature: 0 });
      assert.equal(r.usage.prompt_tokens, want, JSON.stringify(p));
      assert.equal(r.usage.total_tokens, want + r.usage.completion_tokens);
    }
    assert.equal(tokenize(prompt).length, 5); // <s> ▁Once ▁upon ▁a ▁time
  });

  test('temperature 0: identical text twice, and streamed text equals non-streamed', async () => {
    const req = { model: modelID, prompt, max_tokens: 24, temperature: 0 };
    const a = await openai.completions.create(req);
    const b = await openai.completions.create(req);
    assert.equal(a.choices[0].text, b.choices[0].text);
    const s = await collect(await openai.completions.create({ ...req, stream: true }), false);
    assert.equal(s.text, a.choices[0].text);
    assert.equal(s.finish, a.choices[0].finish_reason);
    assert.deepEqual(counts(s.usage), counts(a.usage));
  });

  test('stop: the string is never in the output and finish_reason is "stop"', async () => {
    const full = (await openai.completions.create({ model: modelID, prompt, max_tokens: 24, temperature: 0 })).choices[0].text;
    // The greedy continuation of the fixture is ", there was a little girl named Lily. ..."
    const stop = 'Lily';
    const at = full.indexOf(stop);
    assert.ok(at > 0, `the greedy text ${JSON.stringify(full)} has no ${stop}`);
    const r = await openai.completions.create({ model: modelID, prompt, max_tokens: 24, temperature: 0, stop });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(!r.choices[0].text.includes(stop), JSON.stringify(r.choices[0].text));
    assert.equal(r.choices[0].text, full.slice(0, at));
    const s = await collect(await openai.completions.create({ model: modelID, prompt, max_tokens: 24, temperature: 0, stop: [' girl', stop], stream: true }), false);
    assert.equal(s.finish, 'stop');
    assert.ok(!s.text.includes(' girl') && !s.text.includes(stop), JSON.stringify(s.text));
    assert.equal(s.text, full.slice(0, full.indexOf(' girl')));
  });

  test('seed: the same seed at temperature 1 gives the same text, others differ', async () => {
    const req = { model: modelID, prompt, max_tokens: 24, temperature: 1 };
    const a = await openai.completions.create({ ...req, seed: 42 });
    const b = await openai.completions.create({ ...req, seed: 42 });
    assert.equal(a.choices[0].text, b.choices[0].text);
    const s = await collect(await openai.completions.create({ ...req, seed: 42, stream: true }), false);
    assert.equal(s.text, a.choices[0].text);
    const texts = new Set([a.choices[0].text]);
    for (const seed of [1, 2, 3]) {
      texts.add((await openai.completions.create({ ...req, seed })).choices[0].text);
    }
    assert.ok(texts.size >= 2, 'four seeds, one text');
  });
});

describe('chat completions', () => {
  test('non-streamed: a chat.completion with an assistant message and usage', async () => {
    const r = await openai.chat.completions.create({ model: modelID, messages, max_tokens: 8, temperature: 0 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, modelID);
    assert.match(r.id, /\S/);
    assert.equal(typeof r.created, 'number');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 8);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
  });

  test('streamed: chat.completion.chunk deltas, the role first, usage last', async () => {
    const stream = await openai.chat.completions.create({ model: modelID, messages, max_tokens: 8, temperature: 0, stream: true });
    const got = await collect(stream, true);
    for (const c of got.chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.model, modelID);
    }
    assert.equal(got.chunks[0].choices[0].delta.role, 'assistant');
    assert.ok(got.text.length > 0);
    assert.equal(got.finish, 'length');
    assert.equal(got.usage?.completion_tokens, 8);
  });

  test('usage.prompt_tokens is the token count of the rendered conversation', async () => {
    for (const m of [messages, [{ role: 'user', content: 'Hi' }]]) {
      const want = chatPromptTokens(m);
      const r = await openai.chat.completions.create({ model: modelID, messages: m, max_tokens: 2, temperature: 0 });
      assert.equal(r.usage.prompt_tokens, want);
    }
    assert.equal(chatPromptTokens([{ role: 'user', content: 'Hi' }]), 41);
  });

  test('temperature 0: identical text twice, and streamed text equals non-streamed', async () => {
    const req = { model: modelID, messages, max_tokens: 24, temperature: 0 };
    const a = await openai.chat.completions.create(req);
    const b = await openai.chat.completions.create(req);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    const s = await collect(await openai.chat.completions.create({ ...req, stream: true }), true);
    assert.equal(s.text, a.choices[0].message.content);
    assert.equal(s.finish, a.choices[0].finish_reason);
    assert.deepEqual(counts(s.usage), counts(a.usage));
  });

  test('stop: the string is never in the output and finish_reason is "stop"', async () => {
    const req = { model: modelID, messages, max_tokens: 24, temperature: 0 };
    const full = (await openai.chat.completions.create(req)).choices[0].message.content;
    // A word from the middle of the greedy reply.
    const words = full.split(/\s+/).filter((w) => w.length >= 3);
    const stop = words[Math.min(2, words.length - 1)];
    const at = full.indexOf(stop);
    assert.ok(stop && at >= 0, `no word in ${JSON.stringify(full)}`);
    for (const stream of [false, true]) {
      const r = await openai.chat.completions.create({ ...req, stop, stream });
      const got = stream ? await collect(r, true) : { text: r.choices[0].message.content, finish: r.choices[0].finish_reason };
      assert.equal(got.finish, 'stop', `stream ${stream}`);
      assert.ok(!got.text.includes(stop), JSON.stringify(got.text));
      assert.equal(got.text, full.slice(0, at));
    }
  });

  // max_completion_tokens, the field OpenAI's chat API has in place of the deprecated
  // max_tokens.
  test('max_completion_tokens limits the reply like max_tokens', async () => {
    const r = await openai.chat.completions.create({ model: modelID, messages, max_completion_tokens: 5, temperature: 0 });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 5);
  });

  // Content as a list of text parts (what many OpenAI clients send).
  test('content as a list of text parts', async () => {
    const parts = [{ role: 'user', content: [{ type: 'text', text: 'Tell me about a cat.' }] }];
    const r = await openai.chat.completions.create({ model: modelID, messages: parts, max_tokens: 4, temperature: 0 });
    const s = await openai.chat.completions.create({ model: modelID, messages: [{ role: 'user', content: 'Tell me about a cat.' }], max_tokens: 4, temperature: 0 });
    assert.equal(r.choices[0].message.content, s.choices[0].message.content);
  });

  test('prompt cache: a conversation continued reuses the cached turns (usage.prompt_tokens_details)', async () => {
    const first = [{ role: 'user', content: 'Tell me a story about a dog.' }];
    const a = await openai.chat.completions.create({ model: modelID, messages: first, max_tokens: 8, temperature: 0 });
    const next = [...first, { role: 'assistant', content: a.choices[0].message.content }, { role: 'user', content: 'And then?' }];
    const b = await openai.chat.completions.create({ model: modelID, messages: next, max_tokens: 8, temperature: 0 });
    const cached = b.usage.prompt_tokens_details?.cached_tokens ?? 0;
    assert.ok(cached >= a.usage.prompt_tokens && cached < b.usage.prompt_tokens, JSON.stringify([a.usage, b.usage]));
    // The same request again: all of its prompt but the last token.
    const c = await openai.chat.completions.create({ model: modelID, messages: next, max_tokens: 8, temperature: 0 });
    assert.equal(c.usage.prompt_tokens_details?.cached_tokens, c.usage.prompt_tokens - 1);
    assert.equal(c.choices[0].message.content, b.choices[0].message.content);
  });

  test('seed: the same seed at temperature 1 gives the same reply', async () => {
    const req = { model: modelID, messages, max_tokens: 16, temperature: 1, seed: 7 };
    const a = await openai.chat.completions.create(req);
    const b = await openai.chat.completions.create(req);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  });
});

describe('parallel', () => {
  test('concurrent requests (--parallel 2, the rest queued) each get the text they get alone', async () => {
    const prompts = ['Once upon a time', 'The cat sat', 'Tom and Sue went to the park', 'One day, a little bird'];
    const alone = [];
    for (const p of prompts) {
      alone.push((await openai.completions.create({ model: modelID, prompt: p, max_tokens: 24, temperature: 0 })).choices[0].text);
    }
    const together = await Promise.all(
      prompts.flatMap((p, i) => [
        openai.completions.create({ model: modelID, prompt: p, max_tokens: 24, temperature: 0 }).then((r) => [i, r.choices[0].text]),
        openai.completions
          .create({ model: modelID, prompt: p, max_tokens: 24, temperature: 0, stream: true })
          .then((st) => collect(st, false))
          .then((r) => [i, r.text]),
      ]),
    );
    for (const [i, text] of together) {
      assert.equal(text, alone[i], JSON.stringify(prompts[i]));
    }
  });
});

describe('models', () => {
  test('GET /v1/models lists the model', async () => {
    const ids = [];
    for await (const m of openai.models.list()) {
      assert.equal(m.object, 'model');
      ids.push(m.id);
    }
    assert.deepEqual(ids, [modelID]);
  });

  test('GET /health answers 200', async () => {
    const r = await request('GET', `${srv.base}/health`);
    assert.equal(r.status, 200);
  });

  // GET /v1/models/{model} (client.models.retrieve); another id is a 404.
  test('GET /v1/models/{id} retrieves the model', async () => {
    const m = await openai.models.retrieve(modelID);
    assert.equal(m.id, modelID);
    assert.equal(m.object, 'model');
    await assert.rejects(openai.models.retrieve('no-such-model'), (e) => e instanceof OpenAI.NotFoundError);
  });
});

// counts are a usage's token counts, without prompt_tokens_details (how many prompt
// tokens the prompt cache held, which depends on the requests before).
function counts(u) {
  return { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };
}

// assertOpenAIError checks the error body OpenAI's clients read.
function assertOpenAIError(body, type) {
  assert.equal(typeof body?.error?.message, 'string', JSON.stringify(body));
  assert.ok(body.error.message.length > 0);
  if (type) {
    assert.equal(body.error.type, type);
  }
  assert.ok('param' in body.error && 'code' in body.error, JSON.stringify(body));
}

describe('errors', () => {
  test('400: a malformed JSON body (raw HTTP)', async () => {
    for (const ep of ['/v1/completions', '/v1/chat/completions']) {
      for (const body of ['{"prompt": "Once', '{"messages": [', 'not json', '']) {
        const r = await request('POST', srv.base + ep, { headers: { 'Content-Type': 'application/json' }, body });
        assert.equal(r.status, 400, `${ep} ${JSON.stringify(body)}: ${r.text}`);
        assert.match(r.headers['content-type'], /^application\/json/);
        assertOpenAIError(r.json, 'invalid_request_error');
      }
    }
  });

  test('400: a field of the wrong type (raw HTTP)', async () => {
    const r = await request('POST', `${srv.base}/v1/completions`, {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: 'many' }),
    });
    assert.equal(r.status, 400, r.text);
    assertOpenAIError(r.json, 'invalid_request_error');
    assert.equal(r.json.error.param, 'max_tokens');
  });

  test('400: out-of-range values are BadRequestError naming the param', async () => {
    const cases = [
      [{ temperature: 3 }, 'temperature'],
      [{ temperature: -0.5 }, 'temperature'],
      [{ top_p: 1.5 }, 'top_p'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ presence_penalty: 5 }, 'presence_penalty'],
      [{ n: 2 }, 'n'],
    ];
    for (const [extra, param] of cases) {
      for (const isChat of [false, true]) {
        const req = isChat ? { model: modelID, messages, max_tokens: 2, ...extra } : { model: modelID, prompt, max_tokens: 2, ...extra };
        const err = await (isChat ? openai.chat.completions.create(req) : openai.completions.create(req)).then(
          () => assert.fail(`${JSON.stringify(extra)}: no error`),
          (e) => e,
        );
        assert.ok(err instanceof OpenAI.BadRequestError, `${JSON.stringify(extra)}: ${err}`);
        assert.equal(err.status, 400);
        assert.equal(err.param, param);
        assert.equal(err.type, 'invalid_request_error');
        assert.ok(err.message.includes(param), err.message);
      }
    }
  });

  test('400: no messages, no prompt', async () => {
    await assert.rejects(openai.chat.completions.create({ model: modelID, messages: [] }), OpenAI.BadRequestError);
    await assert.rejects(openai.completions.create({ model: modelID }), OpenAI.BadRequestError);
  });

  test('400: a prompt longer than the context, with both numbers in the message', async () => {
    const long = 'Once upon a time there was a cat. '.repeat(80);
    const n = tokenize(long).length;
    assert.ok(n > modelContext, `${n} tokens`);
    const err = await openai.completions.create({ model: modelID, prompt: long, max_tokens: 4 }).then(
      () => assert.fail('no error'),
      (e) => e,
    );
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.equal(err.param, 'prompt');
    assert.ok(err.message.includes(String(n)), `${n} not in ${err.message}`);
    assert.ok(err.message.includes(String(modelContext)), `${modelContext} not in ${err.message}`);

    const chatMessages = [{ role: 'user', content: long }];
    const cn = chatPromptTokens(chatMessages);
    const cerr = await openai.chat.completions.create({ model: modelID, messages: chatMessages, max_tokens: 4, stream: true }).then(
      () => assert.fail('no error'),
      (e) => e,
    );
    assert.ok(cerr instanceof OpenAI.BadRequestError, String(cerr));
    assert.equal(cerr.param, 'messages');
    assert.ok(cerr.message.includes(String(cn)), `${cn} not in ${cerr.message}`);
    assert.ok(cerr.message.includes(String(modelContext)), `${modelContext} not in ${cerr.message}`);
  });

  test('404: an unknown route is NotFoundError', async () => {
    const err = await openai.get('/no/such/route').then(
      () => assert.fail('no error'),
      (e) => e,
    );
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
    assert.equal(err.status, 404);
    const r = await request('POST', `${srv.base}/v1/embeddings`, { body: '{}' });
    assert.equal(r.status, 404);
    assertOpenAIError(r.json);
  });

  test('405: a wrong method, with Allow', async () => {
    const r = await request('GET', `${srv.base}/v1/chat/completions`);
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'POST');
    assertOpenAIError(r.json);
    const err = await openai.get('/completions').then(
      () => assert.fail('no error'),
      (e) => e,
    );
    assert.ok(err instanceof OpenAI.APIError, String(err));
    assert.equal(err.status, 405);
  });

  test('413: a body over the limit, raw HTTP and through the client', async () => {
    // Just over 1 MiB: what the server leaves unread is small enough for it to drain, so
    // the connection is not reset under the response.
    const big = 'a '.repeat(600 << 10);
    const r = await request('POST', `${srv.base}/v1/completions`, {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: big, max_tokens: 1 }),
    });
    assert.equal(r.status, 413, r.text);
    assertOpenAIError(r.json, 'invalid_request_error');
    const err = await openai.chat.completions.create({ model: modelID, messages: [{ role: 'user', content: big }], max_tokens: 1 }).then(
      () => assert.fail('no error'),
      (e) => e,
    );
    assert.ok(err instanceof OpenAI.APIError, String(err));
    assert.equal(err.status, 413);
    // The server still answers afterwards.
    const ok = await openai.completions.create({ model: modelID, prompt, max_tokens: 1 });
    assert.equal(ok.usage.completion_tokens, 1);
  });
});

describe('raw HTTP stream', () => {
  test('text/event-stream of data: chunks ending in data: [DONE]', async () => {
    const r = await streamRequest(`${srv.url}/chat/completions`, { model: modelID, messages, max_tokens: 6, temperature: 0 });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    const events = [];
    for await (const e of r.events) {
      events.push(e);
    }
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
    assert.equal(chunks.at(-1).usage.completion_tokens, 6);
    assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
  });
});
