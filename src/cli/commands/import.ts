/**
 * `sortednet import`: a Hugging Face model folder or a torchvision state dict as a sortednet run
 * (the logic: src/run/hf_import.ts, src/run/torchvision_import.ts).
 */
import { InvalidArgumentError } from 'commander';
import { initEngine } from '../../engine/backend.js';
import type { GridSpec } from '../../sorted/grid.js';
import { importHuggingFace } from '../../run/hf_import.js';
import { importTorchvisionRun } from '../../run/torchvision_import.js';
import { TORCHVISION_ARCHS } from '../../models/torchvision.js';
import { intArg, need, positiveIntArg } from '../args.js';
import type { RegisterCommand } from '../command.js';

/** `--grid`: JSON ({"depth":[4,8,12]}) or the short form depth=4,8,12;heads=8,16. */
export function gridArg(value: string): GridSpec {
  const text = value.trim();
  if (text.startsWith('{')) {
    try {
      return JSON.parse(text) as GridSpec;
    } catch (e) {
      throw new InvalidArgumentError(`'${value}' is not valid JSON (${(e as Error).message})`);
    }
  }
  const grid: Record<string, number[]> = {};
  for (const part of text.split(';')) {
    const [dim, list] = part.split('=');
    const values = (list ?? '').split(',').map(Number);
    if (!dim?.trim() || values.length === 0 || values.some((v) => !Number.isFinite(v) || v <= 0))
      throw new InvalidArgumentError(
        `'${value}' is not a grid: give DIM=V1,V2;DIM=… (e.g. depth=4,8,12) or JSON ({"depth":[4,8,12]})`,
      );
    grid[dim.trim()] = values;
  }
  return grid;
}

interface ImportFlags {
  hf?: string;
  torchvision?: string;
  weights?: string;
  out?: string;
  grid?: GridSpec;
  data?: string;
  classes?: number;
  imageSize?: number;
  testSubset?: number;
  seed?: number;
}

export const registerImport: RegisterCommand = (program, exit) => {
  program
    .command('import')
    .description(
      `import a pre-trained model as a sortednet run: a Hugging Face decoder LM folder (--hf: LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel) or a torchvision classifier's state dict saved as safetensors (--torchvision ${TORCHVISION_ARCHS.join('|')} --weights FILE)`,
    )
    .option(
      '--hf <dir>',
      'the Hugging Face model folder: config.json, *.safetensors (+ index), tokenizer.json',
    )
    .option('--torchvision <arch>', `a torchvision architecture: ${TORCHVISION_ARCHS.join(', ')}`)
    .option(
      '--weights <file>',
      "with --torchvision: the state dict as .safetensors (a .pt/.pth converts with 'python -m sortednet_torch.convert IN.pt OUT.safetensors')",
    )
    .option('--out <dir>', 'a new or empty folder for the run')
    .option(
      '--grid <grid>',
      'the sub-models, e.g. depth=4,8,12 or {"depth":[4,8,12],"heads":[8,16]} (default: LMs an exit after every layer; torchvision depth ½, ¾, all × width 0.5, 0.75, 1)',
      gridArg,
    )
    .option(
      '--data <name>',
      'the data later commands use: LMs a corpus (default sotu); torchvision an image set (mnist, fashion-mnist, a folder), required',
    )
    .option(
      '--classes <n>',
      "torchvision: the classifier's classes (default: read from the weights)",
      positiveIntArg,
    )
    .option(
      '--image-size <n>',
      "torchvision: the image side FLOPs are counted at (default: the data's)",
      positiveIntArg,
    )
    .option(
      '--test-subset <n>',
      'torchvision: test images later evaluations use, recorded in run.json (default all)',
      positiveIntArg,
    )
    .option('--seed <n>', 'the run seed recorded with the checkpoint (default 1)', intArg)
    .action(async (flags: ImportFlags) => {
      const out = need(flags.out, '--out DIR', 'import');
      if ((flags.hf === undefined) === (flags.torchvision === undefined))
        throw new Error(
          'import: give --hf DIR (a Hugging Face folder) or --torchvision ARCH --weights FILE, one of them',
        );
      await initEngine('cpu');
      if (flags.torchvision !== undefined) {
        const weights = need(flags.weights, '--weights FILE.safetensors', 'import --torchvision');
        const data = need(
          flags.data,
          '--data NAME (the images the model classifies)',
          'import --torchvision',
        );
        const r = importTorchvisionRun(weights, flags.torchvision, out, {
          data,
          grid: flags.grid,
          classes: flags.classes,
          imageSize: flags.imageSize,
          testSubset: flags.testSubset,
          seed: flags.seed,
        });
        console.log(
          `imported torchvision ${flags.torchvision}: ${r.model.parameterCount()} parameters; grid ${JSON.stringify(r.grid)} → ${out}`,
        );
        r.model.dispose();
        return exit(0);
      }
      for (const [k, v] of [
        ['--classes', flags.classes],
        ['--image-size', flags.imageSize],
        ['--weights', flags.weights],
      ] as const)
        if (v !== undefined) throw new Error(`import: ${k} goes with --torchvision, not --hf`);
      const dir = flags.hf!;
      const r = importHuggingFace(dir, out, { grid: flags.grid, data: flags.data, seed: flags.seed });
      const c = r.model.config;
      console.log(
        `imported ${r.architecture}: ${c.layers} layers, dim ${c.dim}, ${String(c.heads)} heads` +
          (c.kvHeads !== undefined ? ` (${String(c.kvHeads)} key/value heads)` : '') +
          `, ${r.model.parameterCount()} parameters; grid ${JSON.stringify(r.grid)} → ${out}`,
      );
      r.model.dispose();
      exit(0);
    });
};
