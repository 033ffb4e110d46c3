/**
 * The server of a language-model run: POST /generate streams tokens as server-sent events
 * (`data: {"token", "text"}` per token, then `event: done` with the totals), or answers in one
 * JSON when `stream` is false. Decoding is the library's KV-cached `generateStream`
 * (src/infer/generate.ts), and the body is checked with the library's own option schema
 * (src/infer/options.ts): Hugging Face `generate` options in camelCase, greedy and stopping at
 * <|endoftext|> by default. Several prompts (or numReturnSequences > 1) decode as one batch and
 * answer in one JSON.
 */
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import type { Transformer } from '../models/transformer.js';
import { generateStream, maxNewTokensFor, type GenerateResult } from '../infer/generate.js';
import { generateBatch, type BatchResult } from '../infer/batch.js';
import { contextWarning, stopTokensFor, TextStreamer } from '../infer/generate_text.js';
import { describeOptionIssues, GenerateOptionsSchema, type GenerateConfig } from '../infer/options.js';
import type { BpeTokenizer } from '../tokenizer/bpe.js';
import { createApp, type AppOptions } from './app.js';
import { HttpError } from './inputs.js';
import { ServeMetrics } from './metrics.js';
import { errorResponse } from './schemas.js';
import { statusRoutes } from './routes/status.js';
import type { Server } from './types.js';

const MAX_NEW_TOKENS = 1024;
/** The header that carries a request's warnings (also in the JSON answer and the final event). */
export const WARNING_HEADER = 'x-sortednet-warning';

/**
 * The body of POST /generate: the library's options (one schema, src/infer/options.ts) plus the
 * prompt, as text or token ids (one prompt, or a list decoded as one batch), and `stream`.
 */
const GenerateBodySchema = GenerateOptionsSchema.extend({
  prompt: z
    .union([z.string().min(1).max(65536), z.array(z.string().min(1).max(65536)).min(1).max(64)])
    .optional(),
  tokens: z
    .union([
      z.array(z.number().int().min(0)).min(1),
      z
        .array(z.array(z.number().int().min(0)).min(1))
        .min(1)
        .max(64),
    ])
    .optional(),
  stream: z.boolean().optional(),
}).strict();
type GenerateBody = z.infer<typeof GenerateBodySchema>;

function parseBody(body: unknown): GenerateBody {
  const r = GenerateBodySchema.safeParse(body ?? {});
  if (!r.success) throw new HttpError(400, describeOptionIssues(r.error, body));
  if ((r.data.maxNewTokens ?? 0) > MAX_NEW_TOKENS)
    throw new HttpError(
      400,
      `maxNewTokens: at most ${MAX_NEW_TOKENS} per request, got ${r.data.maxNewTokens}`,
    );
  return r.data;
}

/** The prompts as token ids (text through the run's tokenizer). */
function promptTokens(tokenizer: BpeTokenizer | undefined, b: GenerateBody): number[][] {
  if ((b.prompt === undefined) === (b.tokens === undefined))
    throw new HttpError(400, "give the prompt as 'prompt' (text) or as 'tokens' (ids), exactly one");
  if (b.prompt !== undefined) {
    if (!tokenizer) throw new HttpError(400, "this run has no tokenizer: send the prompt as 'tokens'");
    return (typeof b.prompt === 'string' ? [b.prompt] : b.prompt).map((p) => tokenizer.encode(p));
  }
  const t = b.tokens!;
  return typeof t[0] === 'number' ? [t as number[]] : (t as number[][]);
}

/** The decoding options of a request: the shared ones, stop at <|endoftext|> by default. */
function generateOptions(tokenizer: BpeTokenizer | undefined, b: GenerateBody): GenerateConfig {
  const { prompt, tokens, stream, ...options } = b;
  void prompt;
  void tokens;
  void stream;
  return { ...options, stopTokens: stopTokensFor(tokenizer, options), stopStrings: undefined };
}

export function createLmServer(
  model: Transformer,
  tokenizer: BpeTokenizer | undefined,
  opts: AppOptions = {},
  /** The window the model was trained on (tokens): a longer request is answered with a warning, as `generate` prints. */
  trainedContext?: number,
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
  let active = 0;

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
  });

  app.post(
    '/generate',
    { schema: { response: { '4xx': errorResponse } } },
    async (req, reply: FastifyReply) => {
      const body = parseBody(req.body);
      const prompts = promptTokens(tokenizer, body);
      const options = generateOptions(tokenizer, body);
      const stopStrings = body.stopStrings ?? [];
      if (stopStrings.length && !tokenizer)
        throw new HttpError(400, "stopStrings need the run's tokenizer; this run has none");
      const silent = new Set(tokenizer?.specials.values() ?? []);
      const t0 = performance.now();
      const sub = body.exit ? `depth=${body.exit}` : 'full';
      // Past the trained window the text is less reliable: said in a header and in the answer.
      const warnings = [
        ...new Set(
          prompts
            .map((p) => contextWarning(p.length, maxNewTokensFor(model, p.length, options), trainedContext))
            .filter((w): w is string => w !== null),
        ),
      ];
      if (warnings.length) reply.header(WARNING_HEADER, warnings.join('; '));
      const withWarnings = warnings.length ? { warnings } : {};
      if (prompts.length > 1 || (body.numReturnSequences ?? 1) > 1) {
        // Several sequences: one batch, answered in one JSON.
        if (body.stream === true)
          throw new HttpError(
            400,
            'several prompts or numReturnSequences > 1 answer in one JSON; leave out stream',
          );
        const streamers = new Map<number, TextStreamer>();
        const at = (row: number) => {
          let s = streamers.get(row);
          if (!s && tokenizer) streamers.set(row, (s = new TextStreamer(tokenizer, stopStrings, silent)));
          return s;
        };
        let r: BatchResult;
        try {
          r = generateBatch(model, prompts, {
            ...options,
            onToken: (row, t) => at(row)?.push(t),
            stopWhen: (row) => at(row)?.stopped ?? false,
          });
        } catch (e) {
          throw new HttpError(400, (e as Error).message);
        }
        const count = r.sequences.reduce((n, q) => n + q.tokens.length, 0);
        metrics.samples.inc({ sub }, count);
        const ms = performance.now() - t0;
        return {
          sequences: r.sequences.map((q, row) => {
            const s = at(row);
            s?.flush();
            return { ...q, text: s?.text };
          }),
          ms,
          tokensPerSecond: (1000 * count) / ms,
          ...withWarnings,
        };
      }
      const prompt = prompts[0];
      const tokens: number[] = [];
      const logprobs: number[] = [];
      const pieces = tokenizer ? new TextStreamer(tokenizer, stopStrings, silent) : null;
      const stream = generateStream(model, prompt, { ...options, stopWhen: () => pieces?.stopped ?? false });
      // The options are checked when decoding starts: a mistake there is the request's (400).
      let first: IteratorResult<number, GenerateResult>;
      try {
        first = await stream.next();
      } catch (e) {
        throw new HttpError(400, (e as Error).message);
      }
      let result: GenerateResult | undefined = first.done ? first.value : undefined;
      const rest = async function* () {
        if (first.done) return;
        yield first.value;
        for (;;) {
          const s = await stream.next();
          if (s.done) {
            result = s.value;
            return;
          }
          yield s.value;
        }
      };
      const summary = () => {
        const ms = performance.now() - t0;
        pieces?.flush();
        if (result?.logprobs) logprobs.push(...result.logprobs);
        return {
          tokens,
          text: pieces?.text,
          ...(body.logprobs ? { logprobs } : {}),
          stoppedBy: result?.stoppedBy ?? 'length',
          ms,
          firstTokenMs: result?.firstTokenMs,
          tokensPerSecond: result?.tokensPerSecond ?? (1000 * tokens.length) / ms,
          ...withWarnings,
        };
      };
      active++;
      try {
        if (body.stream === false) {
          for await (const t of rest()) {
            tokens.push(t);
            pieces?.push(t);
          }
          metrics.samples.inc({ sub }, tokens.length);
          return summary();
        }
        reply.hijack();
        reply.raw.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: lifecycle.draining ? 'close' : 'keep-alive',
          ...(warnings.length ? { [WARNING_HEADER]: warnings.join('; ') } : {}),
        });
        let gone = false;
        reply.raw.on('close', () => (gone = true));
        // A shutdown whose grace period ends before this stream does ends it with a final event.
        const cut: { reason: string | null } = { reason: null };
        const closeStream = lifecycle.openStream((reason) => (cut.reason = reason));
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
        // The done event carries the whole text (a tail held back for a stop string included).
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
