/** The server's Prometheus metrics (prom-client), one registry per server. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'sortednet_requests_total',
    help: 'HTTP requests by route and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'sortednet_request_duration_seconds',
    help: 'End-to-end request latency in the server (receipt to reply)',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly queue = new Gauge({
    name: 'sortednet_queue_samples',
    help: 'Samples waiting for a batch',
    registers: [this.registry],
  });
  readonly active = new Gauge({
    name: 'sortednet_active_submodel',
    help: '1 for the default sub-model now serving requests without a budget, 0 for the others',
    labelNames: ['sub'] as const,
    registers: [this.registry],
  });
  readonly switches = new Counter({
    name: 'sortednet_submodel_switches_total',
    help: 'Changes of the default sub-model by the adaptive controller',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly samples = new Counter({
    name: 'sortednet_samples_total',
    help: 'Samples inferred, by sub-model (the sub-model mix)',
    labelNames: ['sub'] as const,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'sortednet_batch_samples',
    help: 'Samples per executed micro-batch',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });

  constructor(subIds: readonly string[], active: string) {
    collectDefaultMetrics({ register: this.registry, prefix: 'sortednet_' });
    for (const id of subIds) this.active.set({ sub: id }, id === active ? 1 : 0);
    for (const d of ['down', 'up']) this.switches.inc({ direction: d }, 0);
  }

  setActive(from: string, to: string): void {
    this.active.set({ sub: from }, 0);
    this.active.set({ sub: to }, 1);
  }
}
