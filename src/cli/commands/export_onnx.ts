/** `sortednet export-onnx`: one sub-model as a standalone ONNX file (src/export/onnx/). */
import { writeFileAtomic } from '../../io/atomic.js';
import { initEngine } from '../../engine/backend.js';
import { loadCheckpoint } from '../../io/checkpoint.js';
import { exportOnnx } from '../../export/onnx/index.js';
import { FULL, parseSubModel } from '../../sorted/submodel.js';
import { Grid } from '../../sorted/grid.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';

export const registerExportOnnx: RegisterCommand = (program, exit) => {
  program
    .command('export-onnx')
    .description(
      'write one sub-model as an ONNX file (opset 17, BatchNorm folded) for onnxruntime and friends',
    )
    .option('--run <dir>', 'the run folder (evaluated: BatchNorm statistics per sub-model)')
    .option('--sub <spec>', 'the sub-model, e.g. depth=4,width=0.5 (default: full)')
    .option('--out <file>', 'the .onnx file to write')
    .option(
      '--kv-cache',
      'LMs: a decoder with past_key_values.N.key/value inputs and present.N.key/value outputs (incremental decoding, as transformers.js exports)',
    )
    .action(async (flags: { run?: string; sub?: string; out?: string; kvCache?: boolean }) => {
      const runDir = need(flags.run, '--run DIR', 'export-onnx');
      const out = need(flags.out, '--out FILE.onnx', 'export-onnx');
      const sub = flags.sub === undefined ? FULL : parseSubModel(flags.sub, '--sub');
      await initEngine('cpu');
      const { model, meta } = await loadCheckpoint(runDir);
      // The grid's entry for the same network carries the BatchNorm statistics ('full' is its largest).
      model.validate(sub);
      const entry = new Grid(meta.grid ?? {}, model).find(sub, model);
      const img = meta.preprocess?.image;
      const e = exportOnnx(model, entry?.sub ?? sub, {
        sampleShape: img ? [img.height, img.width, img.channels] : undefined,
        metadata: meta.preprocess ? { preprocess: JSON.stringify(meta.preprocess) } : {},
        kvCache: flags.kvCache,
      });
      writeFileAtomic(out, e.bytes);
      console.log(
        `wrote ${out} (${(e.bytes.length / 1024).toFixed(1)} KiB): ${model.family} sub-model ${e.sub}, opset ${e.opset}; ` +
          `input '${e.input.name}' ${e.input.type} [${e.input.shape.join(', ')}] → '${e.output.name}' [${e.output.shape.join(', ')}]` +
          (e.cache
            ? `; KV cache: ${e.cache.inputs.length} past_key_values.* inputs → present.* outputs`
            : ''),
      );
      exit(0);
    });
};
