/** Names of the prefix matmul kernels (src/engine/ops/prefix_mat_mul.ts; native ones in src/engine/native). */
export const PrefixMatMul = 'SortedNetPrefixMatMul';
export const PrefixMatMulGradInput = 'SortedNetPrefixMatMulGradInput';
export const PrefixMatMulGradWeight = 'SortedNetPrefixMatMulGradWeight';

/** Kernels whose ops fall back to stock compositions on a backend that lacks them. */
export const OPTIONAL_PREFIX_KERNELS = [PrefixMatMul, PrefixMatMulGradInput, PrefixMatMulGradWeight] as const;
