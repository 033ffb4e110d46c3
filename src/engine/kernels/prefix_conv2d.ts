import type { FusedActivation } from './activation.js';

/** Names of the prefix convolution kernels (src/engine/ops/prefix_conv2d.ts; native ones in src/engine/native). */
export const PrefixConv2D = 'SortedNetPrefixConv2D';
export const PrefixConv2DGradInput = 'SortedNetPrefixConv2DGradInput';
export const PrefixConv2DGradFilter = 'SortedNetPrefixConv2DGradFilter';

/** The attributes all three share: the convolution's stride and padding mode. */
export interface PrefixConv2DAttrs {
  strides: [number, number];
  pad: 'same' | 'valid';
  /** Forward: the activation applied after the (optional) bias b[:out]; 'linear' when absent. */
  activation?: FusedActivation;
  /**
   * Forward: whether input b (a bias) is given. Filter gradient: also return the bias gradient (full length,
   * zero past `out`) as a second output.
   */
  bias?: boolean;
}

/**
 * Below this many multiply-adds a convolution stays off oneDNN (on OpenBLAS's direct kernels, XNNPACK, or
 * slice + conv2d for a prefix): a oneDNN call pays its reorders and a thread wake-up. The batch-1 ResNet
 * forward (1.8 M multiply-adds a layer at most) took 3.1 ms at best on oneDNN against 2.2 ms without; its
 * batch-64 training convolutions (7 M and up) gain (node dist/bench/conv_dnnl.js). Mutable so that tests can
 * send every size through oneDNN; SORTEDNET_DNNL_MIN_MACS overrides it.
 */
export const dnnlLimits = {
  minMacs: Number(
    (typeof process === 'undefined' ? undefined : process.env.SORTEDNET_DNNL_MIN_MACS) ?? 1 << 22,
  ),
};
