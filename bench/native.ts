/** The OpenBLAS addon for the benches that time its own kernels: without it they have nothing to measure. */
import { loadNativeBlas, nativeBlasUnavailableReason, type NativeBlas } from '../src/engine/native/index.js';

/** The addon, or a line saying why it is missing and exit 0 (a machine without it is not an error). */
export function nativeBlasOrExit(): NativeBlas {
  const blas = loadNativeBlas();
  if (blas) return blas;
  console.log(`native addon unavailable: ${nativeBlasUnavailableReason()}`);
  process.exit(0);
}
