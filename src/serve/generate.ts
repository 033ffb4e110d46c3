/**
 * The server of a language-model run: POST /generate streams tokens as server-sent events
 * (`data: {"token", "text"}` per token, then `event: done` with the totals), or answers in one
 * JSON when `stream` is false. Sampling options follow Hugging Face `generate` (maxNewTokens,
 * temperature, topK, topP, seed); `exit` decodes with a shallower sub-model; `speculative` drafts
 * with a shallow sub-model and verifies with the full one (greedy: identical output).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Transformer } from '../models/transformer.js';
import { BYTE_VOCAB_SIZE, decodeBytes } from '../data/text.js';
import { createApp, type AppOptions } from './app.js';
import { decodeStream, type DecodeOptions } from './decode.js';
import { HttpError } from './inputs.js';
import { ServeMetrics } from './metrics.js';
import { errorResponse, healthResponse } from './schemas.js';
import type { Server } from './server.js';

interface GenerateBody {
  prompt?: string;
  tokens?: number[];
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  exit?: number;
  speculative?: { draftDepth: number; k?: number };
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
      speculative: {
        type: 'object',
        additionalProperties: false,
        required: ['draftDepth'],
        properties: {
          draftDepth: { type: 'integer', minimum: 1 },
          k: { type: 'integer', minimum: 1, maximum: 16 },
        },
      },
      stream: { type: 'boolean' },
    },
  } as const;
}

/** Byte-level LMs (vocab 257) read and write text; others take and give token ids. */
const isByteLevel = (model: Transformer) => model.config.vocab === BYTE_VOCAB_SIZE;

function promptTokens(model: Transformer, b: GenerateBody): number[] {
  if ((b.prompt === undefined) === (b.tokens === undefined))
    throw new HttpError(400, "give the prompt as 'prompt' (text) or as 'tokens' (ids), exactly one");
  if (b.prompt !== undefined) {
    if (!isByteLevel(model))
      throw new HttpError(400, `this model's vocabulary (${model.config.vocab}) is not bytes: send 'tokens'`);
    return Array.from(new TextEncoder().encode(b.prompt), (byte) => byte + 1);
  }
  const bad = b.tokens!.findIndex((t) => t >= model.config.vocab);
  if (bad >= 0)
    throw new HttpError(
      400,
      `tokens[${bad}] = ${b.tokens![bad]} is outside the vocabulary 0..${model.config.vocab - 1}`,
    );
  return b.tokens!;
}

function decodeOptions(model: Transformer, b: GenerateBody, promptLength: number): DecodeOptions {
  const layers = model.config.layers;
  const o: DecodeOptions = {
    maxNewTokens: b.maxNewTokens ?? 32,
    temperature: b.temperature ?? 0,
    topK: b.topK,
    topP: b.topP,
    seed: b.seed,
    exit: b.exit,
    speculative: b.speculative,
  };
  if (o.exit !== undefined && o.exit > layers)
    throw new HttpError(400, `exit ${o.exit} > the model's ${layers} layers`);
  if (o.topK !== undefined && o.topK > model.config.vocab)
    throw new HttpError(400, `topK ${o.topK} > the vocabulary (${model.config.vocab})`);
  if (o.speculative) {
    if (o.speculative.draftDepth >= layers)
      throw new HttpError(
        400,
        `speculative.draftDepth ${o.speculative.draftDepth} must be < the model's ${layers} layers`,
      );
    if (o.temperature !== 0 || o.exit !== undefined)
      throw new HttpError(
        400,
        'speculative decoding here is greedy on the full model: drop temperature and exit',
      );
    if (promptLength + o.maxNewTokens > model.config.maxLen)
      throw new HttpError(
        400,
        `speculative: prompt (${promptLength}) + maxNewTokens (${o.maxNewTokens}) must fit the context of ${model.config.maxLen}`,
      );
  }
  return o;
}

export function createLmServer(model: Transformer, opts: AppOptions = {}): Server {
  const { app, isClosing } = createApp(opts, 'POST /generate, GET /models, GET /health, GET /metrics');
  const metrics = new ServeMetrics([], 'full');
  const text = (tokens: number[]) => (isByteLevel(model) ? decodeBytes(tokens) : undefined);
  const started = performance.now();
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
      const prompt = promptTokens(model, req.body);
      const o = decodeOptions(model, req.body, prompt.length);
      const t0 = performance.now();
      const tokens: number[] = [];
      const stream = decodeStream(model, prompt, o);
      const summary = () => {
        const ms = performance.now() - t0;
        return { tokens, text: text(tokens), ms, tokensPerSecond: (1000 * tokens.length) / ms };
      };
      active++;
      try {
        if (req.body.stream === false) {
          for await (const t of stream) tokens.push(t);
          metrics.samples.inc({ sub: o.exit ? `depth=${o.exit}` : 'full' }, tokens.length);
          return summary();
        }
        reply.hijack();
        reply.raw.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
        });
        let gone = false;
        reply.raw.on('close', () => (gone = true));
        for await (const t of stream) {
          if (gone) break; // the client left: stop decoding
          tokens.push(t);
          reply.raw.write(`data: ${JSON.stringify({ token: t, text: text([t]) })}\n\n`);
        }
        metrics.samples.inc({ sub: o.exit ? `depth=${o.exit}` : 'full' }, tokens.length);
        metrics.requests.inc({ route: '/generate', status: '200' });
        if (!gone) reply.raw.end(`event: done\ndata: ${JSON.stringify(summary())}\n\n`);
      } finally {
        active--;
      }
    },
  );

  app.get('/models', async () => ({
    family: model.family,
    task: model.config.task,
    layers: model.config.layers,
    vocab: model.config.vocab,
    maxLen: model.config.maxLen,
    text: isByteLevel(model),
    exits: Array.from({ length: model.config.layers }, (_, i) => i + 1),
  }));
  app.get('/health', { schema: { response: { 200: healthResponse } } }, async () => ({
    status: 'ok',
    active: 'full',
    queue: active,
    uptimeSeconds: (performance.now() - started) / 1000,
  }));
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  return {
    app,
    active: () => 'full',
    switches: [],
    listen: (port, host = '127.0.0.1') => app.listen({ port, host }),
    shutdown: () => isClosing.close(),
  };
}
