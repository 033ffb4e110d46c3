/** JSON schemas of every route: fastify rejects bad requests with them before a handler runs. */

const positiveNumberText = {
  type: 'string',
  pattern: '^[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$',
  maxLength: 40,
};
const subText = { type: 'string', minLength: 1, maxLength: 400 };

/** Budgets and options in the query string (the only place for them with a binary body). */
export const predictQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    sub: subText,
    maxFlops: positiveNumberText,
    maxLatencyMs: positiveNumberText,
    probabilities: { type: 'string', enum: ['true', 'false'] },
  },
} as const;

export function predictBody(maxSamples: number) {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['inputs'],
    properties: {
      inputs: { type: 'array', minItems: 1, maxItems: maxSamples, items: { type: 'array' } },
      sub: subText,
      maxFlops: { type: 'number', exclusiveMinimum: 0 },
      maxLatencyMs: { type: 'number', exclusiveMinimum: 0 },
      probabilities: { type: 'boolean' },
    },
  } as const;
}

export const predictResponse = {
  type: 'object',
  properties: {
    sub: { type: 'string' },
    flops: { type: 'number' },
    predictions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          class: { type: 'integer' },
          label: { type: 'string' },
          probability: { type: 'number' },
        },
      },
    },
    probabilities: { type: 'array', items: { type: 'array', items: { type: 'number' } } },
  },
} as const;

export const errorResponse = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    message: { type: 'string' },
  },
} as const;

export const healthResponse = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    active: { type: 'string' },
    queue: { type: 'integer' },
    uptimeSeconds: { type: 'number' },
  },
} as const;

export const modelsResponse = {
  type: 'object',
  properties: {
    family: { type: 'string' },
    input: { type: 'string' },
    active: { type: 'string' },
    adaptive: {
      type: ['object', 'null'],
      properties: { targetP99Ms: { type: 'number' } },
    },
    subModels: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          params: { type: 'number' },
          flops: { type: 'number' },
          accuracy: { type: ['number', 'null'] },
          evalLatencyMs: { type: ['number', 'null'] },
          batchMs: {
            type: 'object',
            properties: { one: { type: 'number' }, full: { type: 'number' } },
          },
          onLadder: { type: 'boolean' },
        },
      },
    },
  },
} as const;
