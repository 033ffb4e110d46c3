/**
 * The server of a language-model run: POST /generate streams tokens as server-sent events
 * (`data: {"token", "text"}` per token, then `event: done` with the totals), or answers in one
 * JSON when `stream` is false. Decoding is the library's KV-cached `generateStream`
 * (src/infer/generate.ts); the options follow Hugging Face `generate` (maxNewTokens,
 * temperature, topK, topP, seed), plus `exit` (a shallower sub-model through the shared head),
 * `earlyExit` and `speculative` (a shallow draft verified by the full model).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Transformer } from '../models/transformer.js';
import { generateStream, type GenerateOptions } from '../infer/generate.js';
import { StreamDecoder, type BpeTokenizer } from '../tokenizer/bpe.js';
import { createApp, type AppOptions } from './app.js';
import { HttpError } from './inputs.js';
import { ServeMetrics } from './metrics.js';
import { errorResponse } from './schemas.js';
import { statusRoutes } from './routes/status.js';
import type { Server } from './types.js';

interface GenerateBody {
  prompt?: string;
  tokens?: number[];
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  exit?: number;
  earlyExit?: { exits: number[]; thresholds: number[] };
  speculative?: { draftDepth: number; k?: number; maxK?: number; adaptive?: boolean };
  stopTokens?: number[];
  stream?: boolean;
}

const MAX_NEW_TOKENS = 1024;

function generateBody(maxLen: number) {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      prompt: { type: 'string', minLength: 1, maxLength: 4 * maxLen },
      tokens: { type: 'array', minItems: 1, maxItems: maxLen, items: { type: 'integer', minimum: 0 } },
      maxNewTokens: { type: 'integer', minimum: 1, maximum: MAX_NEW_TOKENS },
      temperature: { type: 'number', minimum: 0, maximum: 100 },
      topK: { type: 'integer', minimum: 0 },
      topP: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
      exit: { type: 'integer', minimum: 1 },
      earlyExit: {
        type: 'object',
        additionalProperties: false,
        required: ['exits', 'thresholds'],
        properties: {
          exits: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'integer', minimum: 1 } },
          thresholds: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'number' } },
        },
      },
      speculative: {
        type: 'object',
        additionalProperties: false,
        required: ['draftDepth'],
        properties: {
          draftDepth: { type: 'integer', minimum: 1 },
          k: { type: 'integer', minimum: 1, maximum: 16 },
          maxK: { type: 'integer', minimum: 1, maximum: 16 },
          adaptive: { type: 'boolean' },
        },
      },
      stopTokens: { type: 'array', maxItems: 64, items: { type: 'integer', minimum: 0 } },
      stream: { type: 'boolean' },
    },
  } as const;
}

function promptTokens(model: Transformer, tokenizer: BpeTokenizer | undefined, b: GenerateBody): number[] {
  if ((b.prompt === undefined) === (b.tokens === undefined))
    throw new HttpError(400, "give the prompt as 'prompt' (text) or as 'tokens' (ids), exactly one");
  if (b.prompt !== undefined) {
    if (!tokenizer) throw new HttpError(400, "this run has no tokenizer: send the prompt as 'tokens'");
    return tokenizer.encode(b.prompt);
  }
  return b.tokens!;
}

function generateOptions(model: Transformer, b: GenerateBody, promptLength: number): GenerateOptions {
  return {
    // Default: 32 new tokens, or what the context has room for.
    maxNewTokens: b.maxNewTokens ?? Math.max(1, Math.min(32, model.config.maxLen - promptLength)),
    // Greedy unless asked to sample, as Hugging Face's generate (do_sample=False).
    temperature: b.temperature ?? 0,
    topK: b.topK,
    topP: b.topP,
    seed: b.seed,
    exit: b.exit,
    earlyExit: b.earlyExit,
    speculative: b.speculative,
    stopTokens: b.stopTokens,
  };
}

export function createLmServer(
  model: Transformer,
  tokenizer: BpeTokenizer | undefined,
  opts: AppOptions = {},
): Server {
  // A prompt of up to 4·maxLen characters (6 bytes each when JSON-escaped) or maxLen token ids,
  // and the options beside it.
  const maxLen = model.config.maxLen;
  const { app, lifecycle } = createApp(
    opts,
    'POST /generate, GET /models, GET /health, GET /metrics',
    16384 + 24 * maxLen + 12 * maxLen,
  );
  const metrics = new ServeMetrics([], 'full');
  const text = (tokens: number[]) => tokenizer?.decode(tokens);
  let active = 0;

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
  });

  app.post<{ Body: GenerateBody }>(
    '/generate',
    { schema: { body: generateBody(model.config.maxLen), response: { '4xx': errorResponse } } },
    async (req: FastifyRequest<{ Body: GenerateBody }>, reply: FastifyReply) => {
      const prompt = promptTokens(model, tokenizer, req.body);
      const t0 = performance.now();
      const tokens: number[] = [];
      const stream = generateStream(model, prompt, generateOptions(model, req.body, prompt.length));
      // The options are checked when decoding starts: a mistake there is the request's (400).
      let first: IteratorResult<number, unknown>;
      try {
        first = await stream.next();
      } catch (e) {
        throw new HttpError(400, (e as Error).message);
      }
      const rest = async function* () {
        if (first.done) return;
        yield first.value;
        for await (const t of { [Symbol.asyncIterator]: () => stream }) yield t;
      };
      const sub = req.body.exit ? `depth=${req.body.exit}` : 'full';
      const summary = () => {
        const ms = performance.now() - t0;
        return { tokens, text: text(tokens), ms, tokensPerSecond: (1000 * tokens.length) / ms };
      };
      active++;
      try {
        if (req.body.stream === false) {
          for await (const t of rest()) tokens.push(t);
          metrics.samples.inc({ sub }, tokens.length);
          return summary();
        }
        reply.hijack();
        reply.raw.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: lifecycle.draining ? 'close' : 'keep-alive',
        });
        let gone = false;
        reply.raw.on('close', () => (gone = true));
        // A shutdown whose grace period ends before this stream does ends it with a final event.
        const cut: { reason: string | null } = { reason: null };
        const closeStream = lifecycle.openStream((reason) => (cut.reason = reason));
        const pieces = tokenizer ? new StreamDecoder(tokenizer) : null;
        try {
          for await (const t of rest()) {
            if (gone || cut.reason !== null) break; // the client left, or the server stops: stop decoding
            tokens.push(t);
            reply.raw.write(`data: ${JSON.stringify({ token: t, text: pieces?.push(t) })}\n\n`);
          }
        } finally {
          closeStream();
        }
        metrics.samples.inc({ sub }, tokens.length);
        metrics.requests.inc({ route: '/generate', status: '200' });
        if (!gone && cut.reason !== null)
          reply.raw.end(`event: shutdown\ndata: ${JSON.stringify({ reason: cut.reason, ...summary() })}\n\n`);
        else if (!gone) reply.raw.end(`event: done\ndata: ${JSON.stringify(summary())}\n\n`);
      } finally {
        active--;
        await stream.return(undefined as never);
      }
    },
  );

  app.get('/models', async () => ({
    family: model.family,
    task: model.config.task,
    layers: model.config.layers,
    vocab: model.config.vocab,
    maxLen: model.config.maxLen,
    tokenizer: tokenizer !== undefined,
    exits: Array.from({ length: model.config.layers }, (_, i) => i + 1),
  }));
  statusRoutes(app, { metrics, active: () => 'full', queue: () => active });

  return {
    app,
    active: () => 'full',
    switches: [],
    listen: (port, host = '127.0.0.1') => app.listen({ port, host }),
    shutdown: (graceMs) => lifecycle.shutdown(graceMs),
  };
}
