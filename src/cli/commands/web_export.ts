/** `sortednet web-export`: the browser app and a trained run as one folder for any static host. */
import { fileURLToPath } from 'node:url';
import { writeWebFolder } from '../../deploy/web_folder_node.js';
import { need, positiveIntArg } from '../args.js';
import type { RegisterCommand } from '../command.js';

/** The page `npm run web:build` writes, in this package's folder. */
const BUILT_PAGE = fileURLToPath(new URL('../../../../web/dist', import.meta.url));

export const registerWebExport: RegisterCommand = (program, exit) => {
  program
    .command('web-export')
    .description(
      "write a deployable folder for a static host: the browser app, the run's model, eval.json and samples.json",
    )
    .option('--run <dir>', 'the run folder (evaluated, for the accuracy curve)')
    .option('--out <dir>', 'the folder to write (new or empty); serve it with any static file server')
    .option('--page <dir>', "the built page (default: this package's web/dist, from 'npm run web:build')")
    .option('--samples <n>', 'test images per class in samples.json (default: 2)', positiveIntArg)
    .action((flags: { run?: string; out?: string; page?: string; samples?: number }) => {
      const run = need(flags.run, '--run DIR', 'web-export');
      const out = need(flags.out, '--out DIR', 'web-export');
      const r = writeWebFolder(run, out, { page: flags.page ?? BUILT_PAGE, samplesPerClass: flags.samples });
      console.log(`wrote ${out}: the page (index.html, assets/) and model/ (${r.modelFiles.join(', ')})`);
      for (const m of r.missing) console.log(`note: ${m}`);
      console.log(
        `serve it with any static file server, e.g. 'python3 -m http.server -d ${out} 8080' (open http://localhost:8080/); ` +
          'with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp headers the wasm backend uses threads',
      );
      exit(0);
    });
};
