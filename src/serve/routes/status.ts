/** GET /health (liveness, the active sub-model, the queue) and GET /metrics (Prometheus text). */
import type { FastifyInstance } from 'fastify';
import type { ServeMetrics } from '../metrics.js';
import { healthResponse } from '../schemas.js';

export interface StatusSource {
  metrics: ServeMetrics;
  /** The default sub-model now. */
  active(): string;
  /** Work waiting: queued samples (classifiers) or open streams (language models). */
  queue(): number;
}

export function statusRoutes(app: FastifyInstance, src: StatusSource): void {
  const started = performance.now();
  app.get('/health', { schema: { response: { 200: healthResponse } } }, async () => ({
    status: 'ok',
    active: src.active(),
    queue: src.queue(),
    uptimeSeconds: (performance.now() - started) / 1000,
  }));

  app.get('/metrics', async (_req, reply) => {
    src.metrics.queue.set(src.queue());
    reply.header('content-type', src.metrics.registry.contentType);
    return src.metrics.registry.metrics();
  });
}
