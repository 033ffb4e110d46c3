/**
 * The fastify instance every server starts from: strict schemas, JSON and float32 bodies only,
 * one error shape ({statusCode, error, message}) naming what was wrong, and a drain that closes
 * each connection after its answer.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { OverloadedError } from './batcher.js';
import { HttpError } from './inputs.js';

export interface AppOptions {
  /** Largest request body, bytes. */
  bodyLimit?: number;
  /** fastify logger: false (tests), true (JSON lines on stdout), or an options object. */
  logger?: boolean | { level: string };
}

export function createApp(
  opts: AppOptions,
  routes: string,
): { app: FastifyInstance; isClosing: { close(): Promise<void> } } {
  const app = Fastify({
    logger: opts.logger ?? false,
    // Per-request log lines would cost more than a small model's inference; switches are logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 4 * 1024 * 1024,
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

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    let status = err instanceof HttpError ? err.statusCode : (err.statusCode ?? 500);
    if (err instanceof OverloadedError) status = 503;
    const internal = status >= 500 && status !== 503;
    if (internal) req.log.error(err, 'request failed');
    const message = internal ? `internal error: ${err.message}` : (validationMessage(err) ?? err.message);
    if (status === 503) reply.header('retry-after', '1');
    return reply.code(status).send({ statusCode: status, error: httpReason(status), message });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: `no route ${req.method} ${req.url.slice(0, 200)}; routes: ${routes}`,
    }),
  );

  let closing: Promise<void> | null = null;
  // While draining, answers close their connection: an idle keep-alive socket would otherwise
  // hold close() open until its timeout.
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  return { app, isClosing: { close: () => (closing ??= app.close()) } };
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
    415: 'Unsupported Media Type',
    422: 'Unprocessable Entity',
    503: 'Service Unavailable',
  };
  return reasons[status] ?? (status >= 500 ? 'Internal Server Error' : 'Bad Request');
}
