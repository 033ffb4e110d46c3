/**
 * The fastify instance every server starts from: strict schemas, JSON and float32 bodies only,
 * one error shape ({statusCode, error, message}) naming what was wrong, admission control (503
 * with Retry-After before a request's body is read), and a drain for shutdown: stop accepting,
 * finish every accepted request and stream up to a grace period, close each connection after
 * its answer.
 */
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';
import { UnavailableError } from './batcher.js';
import { HttpError } from './inputs.js';

export interface AppOptions {
  /** Largest request body, bytes (default: what the model's input × the batch limit needs). */
  bodyLimit?: number;
  /** Most requests being received or waiting for an answer; beyond it, 503 with Retry-After. */
  maxInflight?: number;
  /** Most request-body bytes being received or waiting at once (declared lengths); beyond it, 503. */
  maxInflightBytes?: number;
  /** On shutdown, how long accepted requests and streams may take before they are cut, ms (default 10 000). */
  graceMs?: number;
  /** fastify logger: false (tests), true (JSON lines on stdout), or an options object. */
  logger?: boolean | { level: string };
}

/** What a shutdown did: answered, refused while draining, and what the grace period cut short. */
export interface ShutdownReport {
  /** Requests (and streams) accepted before the shutdown that finished normally. */
  finished: number;
  /** Requests that arrived during the drain, answered 503 (the client retries elsewhere). */
  refused: number;
  /** Streams ended by the grace period, with a final event saying why. */
  cutStreams: number;
  /** Accepted requests left without an answer when the grace period ended. */
  dropped: number;
}

/** The lifecycle every server shares: admission control, open streams, the drain on shutdown. */
export interface Lifecycle {
  /** True from the start of a shutdown. */
  readonly draining: boolean;
  /**
   * Registers an open stream; `cut(reason)` ends it early (a final event saying why) when the
   * grace period ends. Call the returned function when the stream has ended.
   */
  openStream(cut: (reason: string) => void): () => void;
  /** Stop accepting, finish what was accepted (up to the grace period), close. Idempotent. */
  shutdown(graceMs?: number): Promise<ShutdownReport>;
}

/** Routes that answer from memory at once: never refused by admission control, never counted. */
const STATUS_ROUTES = new Set(['/health', '/metrics']);
/** How long the drain waits for silence on kept-alive sockets before closing them, ms. */
const LINGER_MS = 150;

export function createApp(
  opts: AppOptions,
  routes: string,
  /** The body limit the model's input shape and batch limit imply (`opts.bodyLimit` overrides it). */
  modelBodyLimit = 4 * 1024 * 1024,
): { app: FastifyInstance; lifecycle: Lifecycle } {
  const bodyLimit = opts.bodyLimit ?? modelBodyLimit;
  const maxInflight = opts.maxInflight ?? 1024;
  const maxInflightBytes = opts.maxInflightBytes ?? Math.max(32 * 1024 * 1024, 16 * bodyLimit);
  const app = Fastify({
    logger: opts.logger ?? false,
    // Per-request log lines would cost more than a small model's inference; switches are logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    // Strict bodies: no silent coercion ("1" → 1) and no silent dropping of unknown fields.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string' },
    app.getDefaultJsonParser('error', 'error'),
  );
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );

  app.setErrorHandler(
    (err: Error & { statusCode?: number; validation?: unknown; code?: string }, req, reply) => {
      let status = err instanceof HttpError ? err.statusCode : (err.statusCode ?? 500);
      if (err instanceof UnavailableError) status = 503;
      const internal = status >= 500 && status !== 503;
      if (internal) req.log.error(err, 'request failed');
      let message = internal ? `internal error: ${err.message}` : (validationMessage(err) ?? err.message);
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        // Refused from its content-length, unread: closing the connection after the answer spares
        // reading (and discarding) the rest of the body, which a kept-alive connection would need,
        // and which a flood of large bodies would make the event loop's main work.
        reply.header('connection', 'close');
        message =
          `the body is too large: more than ${bodyLimit} bytes` +
          (opts.bodyLimit === undefined ? ", what this model's input × the batch limit needs" : '') +
          "; send fewer samples, or float32 with an 'x-shape' header";
      }
      if (status === 503) reply.header('retry-after', '1');
      return reply.code(status).send({ statusCode: status, error: httpReason(status), message });
    },
  );
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: `no route ${req.method} ${req.url.slice(0, 200)}; routes: ${routes}`,
    }),
  );

  // Admission control: counted from the request's headers, before its body is read, so a flood of
  // large bodies is refused before it takes memory; /health and /metrics are never refused.
  let inflight = 0;
  let inflightBytes = 0;
  let lastArrival = 0;
  let draining: Promise<ShutdownReport> | null = null;
  const report: ShutdownReport = { finished: 0, refused: 0, cutStreams: 0, dropped: 0 };
  const accepted = new Set<FastifyReply>();
  const streams = new Set<(reason: string) => void>();
  const refuseLater = new WeakSet<FastifyRequest>();
  let settle: (() => void) | null = null;
  const refuse = (reply: FastifyReply, message: string) =>
    reply
      .code(503)
      .header('retry-after', '1')
      .send({ statusCode: 503, error: 'Service Unavailable', message });

  // The drain needs to know when the clients have gone quiet: the last moment a connection opened
  // or a request began, and the requests being received or answered (refusals included).
  let receiving = 0;
  app.server.on('connection', () => (lastArrival = performance.now()));
  app.server.on('request', (_req, res: ServerResponse) => {
    lastArrival = performance.now();
    receiving++;
    res.once('close', () => {
      receiving--;
      lastArrival = performance.now();
    });
  });
  app.addHook('onRequest', async (req, reply) => {
    if (draining) {
      // Refused once its body is read (preValidation): closing a socket with unread bytes would
      // reset it, and the client would lose the 503 too.
      refuseLater.add(req);
      return;
    }
    if (STATUS_ROUTES.has(req.routeOptions.url ?? '')) return;
    const declared = Number(req.headers['content-length']);
    const bytes = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, bodyLimit) : bodyLimit;
    if (inflight + 1 > maxInflight || (inflight > 0 && inflightBytes + bytes > maxInflightBytes)) {
      return refuse(
        reply,
        `the server holds ${inflight} requests (${inflightBytes} body bytes); limits ${maxInflight} requests, ${maxInflightBytes} bytes; retry later`,
      );
    }
    inflight++;
    inflightBytes += bytes;
    accepted.add(reply);
    // 'close' fires once the answer is sent, a stream ends, or the client goes away.
    reply.raw.once('close', () => {
      inflight--;
      inflightBytes -= bytes;
      accepted.delete(reply);
      if (draining) report.finished++;
      if (accepted.size === 0) settle?.();
    });
  });

  app.addHook('preValidation', async (req, reply) => {
    if (!refuseLater.has(req)) return;
    report.refused++;
    return refuse(reply, 'the server is shutting down; retry on another instance');
  });

  // While draining, every answer (a refusal too) closes its connection after it is sent, and says
  // so: a client told `connection: close` never sends another request on that socket, so no
  // request can cross the server's close of it (the reset a kept-alive socket would risk).
  app.addHook('onSend', async (_req, reply) => {
    if (draining) reply.header('connection', 'close');
  });

  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  // One turn of the event loop's I/O phase: connections and bytes that arrived while the loop was
  // busy (a long batch, a busy machine) are seen before the drain decides the clients are quiet.
  const ioTurn = () => new Promise<void>((r) => setImmediate(r));
  const quiet = async () => {
    await ioTurn();
    await ioTurn();
    return receiving === 0 && performance.now() - lastArrival >= LINGER_MS;
  };

  async function drain(graceMs: number): Promise<ShutdownReport> {
    const deadline = performance.now() + graceMs;
    // 1. No new work: from now on every request is answered 503 (connection: close). The port
    //    stays open until the clients have gone quiet: closing it at once would reset the
    //    connections still in the kernel's accept queue, requests already sent on them included.
    const wasListening = app.server.listening;
    // 2. Finish what was accepted, up to the grace period.
    if (accepted.size > 0) {
      const allDone = new Promise<void>((r) => (settle = r));
      let timer: NodeJS.Timeout | undefined;
      const graceOver = await Promise.race([
        allDone.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
      ]);
      clearTimeout(timer);
      if (graceOver) {
        const reason = `the server is shutting down and the grace period of ${graceMs} ms ended`;
        for (const cut of [...streams]) {
          report.cutStreams++;
          cut(reason);
        }
        await Promise.race([allDone, sleep(100)]);
      }
    }
    // 3. Answer (503, connection: close) what still arrives until no request is being received or
    //    answered and none began for LINGER_MS (at most the rest of the grace period, at least
    //    LINGER_MS), then close the port (net.Server's close: http's would also close the idle
    //    sockets at once) and the idle kept-alive sockets.
    const until = Math.max(deadline, performance.now() + LINGER_MS);
    while (wasListening && !(await quiet()) && performance.now() < until) await sleep(25);
    if (wasListening) NetServer.prototype.close.call(app.server);
    // A request still being received or answered when the port closes is one this server dropped.
    report.dropped = receiving;
    app.server.closeIdleConnections?.();
    if (report.dropped > 0) app.server.closeAllConnections?.();
    await app.close();
    return report;
  }

  const lifecycle: Lifecycle = {
    get draining() {
      return draining !== null;
    },
    openStream(cut) {
      streams.add(cut);
      return () => streams.delete(cut);
    },
    shutdown(graceMs = opts.graceMs ?? 10_000) {
      return (draining ??= drain(graceMs));
    },
  };
  return { app, lifecycle };
}

/** Names the offending field where ajv's default message does not ("must NOT have additional properties"). */
function validationMessage(err: { validation?: unknown; validationContext?: string }): string | undefined {
  const first = (
    err.validation as { keyword: string; instancePath: string; params: Record<string, unknown> }[]
  )?.[0];
  if (first?.keyword !== 'additionalProperties') return undefined;
  const where = `${err.validationContext ?? 'body'}${first.instancePath.replaceAll('/', '.')}`;
  return `${where} has an unknown field '${String(first.params.additionalProperty)}'`;
}

function httpReason(status: number): string {
  const reasons: Record<number, string> = {
    400: 'Bad Request',
    404: 'Not Found',
    405: 'Method Not Allowed',
    413: 'Payload Too Large',
    429: 'Too Many Requests',
    415: 'Unsupported Media Type',
    422: 'Unprocessable Entity',
    503: 'Service Unavailable',
  };
  return reasons[status] ?? (status >= 500 ? 'Internal Server Error' : 'Bad Request');
}
