/**
 * The activations the project's kernels fuse after a convolution or a batch norm, and the kernel for their
 * gradient (native only: src/engine/native/dnnl_prefix_conv2d.ts).
 */
export type FusedActivation = 'linear' | 'relu' | 'relu6';

/** The activation as the native addons number it (native/dnnl/dnnl.c, native/blas.c). */
export const ACTIVATION_CODE = { linear: 0, relu: 1, relu6: 2 } as const satisfies Record<
  FusedActivation,
  number
>;

/** dx = dy where the activation's output y passed it (0 < y, and y < 6 for ReLU6), else 0. */
export const ActivationGrad = 'SortedNetActivationGrad';
