/** GET /health (liveness, the active sub-model, the queue) and GET /metrics (Prometheus text). */
import type { FastifyInstance } from 'fastify';
import type { ServeMetrics } from '../metrics.js';
import { errorResponse, healthResponse } from '../schemas.js';

export interface StatusSource {
  metrics: ServeMetrics;
  /** The default sub-model now. */
  active(): string;
  /** Work waiting: queued samples (classifiers) or open streams (language models). */
  queue(): number;
  /** Why the server can no longer answer (its inference thread stopped), or null. */
  failure?(): string | null;
}

export function statusRoutes(app: FastifyInstance, src: StatusSource): void {
  const started = performance.now();
  app.get(
    '/health',
    { schema: { response: { 200: healthResponse, 503: errorResponse } } },
    async (_req, reply) => {
      // A server that cannot answer says so, so that a supervisor restarts it.
      const failure = src.failure?.() ?? null;
      if (failure !== null)
        return reply
          .code(503)
          .send({ statusCode: 503, error: 'Service Unavailable', message: `cannot serve: ${failure}` });
      return {
        status: 'ok',
        active: src.active(),
        queue: src.queue(),
        uptimeSeconds: (performance.now() - started) / 1000,
      };
    },
  );

  app.get('/metrics', async (_req, reply) => {
    src.metrics.queue.set(src.queue());
    reply.header('content-type', src.metrics.registry.contentType);
    return src.metrics.registry.metrics();
  });
}
