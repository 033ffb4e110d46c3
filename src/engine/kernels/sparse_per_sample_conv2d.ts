/** Name of the sparse per-sample convolution kernel (src/engine/ops/sparse_per_sample_conv2d.ts; native one in src/engine/native). */
export const SparsePerSampleConv2D = 'SortedNetSparsePerSampleConv2D';
