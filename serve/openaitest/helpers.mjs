// Helpers of the acceptance suite: start a real `lmrun serve`, ask the lmrun binary
// for token counts, and talk raw HTTP next to the official OpenAI client.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The repository's root: this suite lives in serve/openaitest. */
export const root = path.resolve(here, '..', '..');

/** The lmrun binary under test: $LMRUN_BIN, else bin/lmrun of the repository (make build). */
export const bin = path.resolve(process.env.LMRUN_BIN || path.join(root, 'bin', 'lmrun'));
if (!existsSync(bin)) {
  throw new Error(`no lmrun binary at ${bin}: run make test-openai, or go build -o bin/lmrun ./cmd/lmrun, or set LMRUN_BIN`);
}

/** The fixture model: Karpathy's trained TinyStories 260K model with its 512-token tokenizer. */
export const model = path.join(root, 'testdata', 'stories260K.lmc');
/** The id the server gives it: the model file's base name. */
export const modelID = 'stories260K.lmc';
/** The model's context length (llama2.c header seq_len). */
export const modelContext = 512;
/** The chat template the suite serves with (the model carries none): lmrun's built-in ChatML. */
export const chatTemplate = 'chatml';

/**
 * A larger random-weight model (the stories42M shape, context 1024) for the tests that
 * need a request to last: made by `lmrun synth`, removed by the returned cleanup.
 */
export function slowModel() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lmrun-openaitest-'));
  const file = path.join(dir, 'stories42m.lmc');
  execFileSync(bin, ['synth', '--preset', 'stories42m', '--seed', '1', '-o', file], { stdio: 'ignore' });
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Starts `lmrun serve` on a free loopback port and waits for GET /health. It returns
 * { proc, base (http://127.0.0.1:PORT), url (base + /v1), stderr(), exited, stop() }.
 * exited resolves to { code, signal } when the process ends.
 */
export async function startServer({ modelPath = model, args = [], env = {} } = {}) {
  const argv = ['serve', '-m', modelPath, '--host', '127.0.0.1', '--port', '0', '-t', '1', ...args];
  const proc = spawn(bin, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lmrun serve printed no address in 30s:\n${log}`)), 30000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (s) => {
      log += s;
      const m = log.match(/on (http:\/\/[^\s]+)\/v1/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`lmrun serve exited (code ${code}, signal ${signal}) before serving:\n${log}`));
    });
  });
  const srv = {
    proc,
    base,
    url: `${base}/v1`,
    exited,
    stderr: () => log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
      }
      await exited;
    },
  };
  for (let deadline = Date.now() + 30000; ; ) {
    try {
      const r = await request('GET', `${base}/health`);
      if (r.status === 200) {
        break;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await srv.stop();
      throw new Error(`GET /health did not answer 200 in 30s:\n${log}`);
    }
    await sleep(50);
  }
  return srv;
}

/** An official OpenAI client pointed at srv; no retries, so every error surfaces. */
export function client(srv, opts = {}) {
  return new OpenAI({ baseURL: srv.url, apiKey: 'no-key', maxRetries: 0, timeout: 60000, ...opts });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One raw HTTP request on a connection of its own (no keep-alive pool). It resolves to
 * { status, headers, text, json } once the whole body is read; a connection error
 * rejects with Node's error (err.code ECONNREFUSED, ...). body is a string or Buffer.
 */
export function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (b) => parts.push(b));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) {
      req.end(body);
    } else {
      req.end();
    }
  });
}

/**
 * POSTs a JSON body with "stream": true and returns the response as it arrives:
 * { status, headers, events } where events is an async iterator of the data: payloads
 * (strings, "[DONE]" included) of the Server-Sent Events.
 */
export function streamRequest(url, payload, { headers = {}, signal } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, agent: false, signal },
      (res) => {
        res.setEncoding('utf8');
        async function* events() {
          let buf = '';
          for await (const s of res) {
            buf += s;
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const event = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const data = event
                .split('\n')
                .filter((l) => l.startsWith('data:'))
                .map((l) => l.slice(5).replace(/^ /, ''))
                .join('\n');
              if (data !== '') {
                yield data;
              }
            }
          }
          if (buf.trim() !== '') {
            throw new Error(`the stream ended inside an event: ${JSON.stringify(buf)}`);
          }
        }
        resolve({ status: res.statusCode, headers: res.headers, events: events(), response: res });
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ ...payload, stream: true }));
  });
}

/** The token ids of text as `lmrun tokenize` gives them (BOS as the model adds it, unless bos is false). */
export function tokenize(text, { bos, modelPath = model } = {}) {
  const argv = ['tokenize', '-m', modelPath, '--json', '-f', '-'];
  if (bos !== undefined) {
    argv.push(`--bos=${bos}`);
  }
  const out = execFileSync(bin, argv, { input: text, encoding: 'utf8' });
  return JSON.parse(out).ids;
}

/** The text messages render to with the suite's chat template, as `lmrun render` prints it. */
export function renderChat(messages) {
  return execFileSync(bin, ['render', '-m', model, '--chat-template', chatTemplate, '--messages', '-', '--add-generation-prompt'], {
    input: JSON.stringify({ messages }),
    encoding: 'utf8',
  });
}

/** The number of tokens the server should count for a chat prompt: the rendered text, no BOS added (the template writes its own). */
export function chatPromptTokens(messages) {
  return tokenize(renderChat(messages), { bos: false }).length;
}

/** Collects an OpenAI client stream: the text, the finish_reason, the usage of the last chunk, and the chunks. */
export async function collect(stream, isChat) {
  let text = '';
  let finish = null;
  let usage = null;
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const c of chunk.choices) {
      text += (isChat ? c.delta?.content : c.text) ?? '';
      if (c.finish_reason) {
        finish = c.finish_reason;
      }
    }
    if (chunk.usage) {
      usage = chunk.usage;
    }
  }
  return { text, finish, usage, chunks };
}

/**
 * GET /metrics: { status, text }; value(name) sums the samples of a metric (every label
 * set), undefined when it is absent.
 */
export async function metrics(srv, headers = {}) {
  const r = await request('GET', `${srv.base}/metrics`, { headers });
  return {
    status: r.status,
    text: r.text,
    value(name) {
      let sum;
      const re = new RegExp(`^${name}(\\{[^}]*\\})?\\s+(\\S+)`, 'gm');
      for (const m of r.text.matchAll(re)) {
        sum = (sum ?? 0) + Number(m[2]);
      }
      return sum;
    },
  };
}
