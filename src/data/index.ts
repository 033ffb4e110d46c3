/** The data layer: image datasets, batches and augmentation, text corpora; plain typed arrays only. */
export * from './augment.js';
export * from './dataset.js';
export * from './idx.js';
export * from './image_file.js';
export * from './loader.js';
export * from './mnist.js';
export * from './random.js';
export * from './registry.js';
export * from './text.js';
export * from './user_data.js';
