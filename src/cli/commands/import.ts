/** `sortednet import`: a Hugging Face model folder as a sortednet run (the logic: src/run/hf_import.ts). */
import { InvalidArgumentError } from 'commander';
import { initEngine } from '../../engine/backend.js';
import type { GridSpec } from '../../sorted/grid.js';
import { importHuggingFace } from '../../run/hf_import.js';
import { intArg, need } from '../args.js';
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

export const registerImport: RegisterCommand = (program, exit) => {
  program
    .command('import')
    .description(
      'import a Hugging Face decoder LM folder (LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel) as a sortednet run',
    )
    .option(
      '--hf <dir>',
      'the Hugging Face model folder: config.json, *.safetensors (+ index), tokenizer.json',
    )
    .option('--out <dir>', 'a new or empty folder for the run')
    .option(
      '--grid <grid>',
      'the sub-models, e.g. depth=4,8,12 or {"depth":[4,8,12],"heads":[8,16]} (default: an exit after every layer)',
      gridArg,
    )
    .option('--data <corpus>', 'the corpus run.json names for later commands (default sotu)')
    .option('--seed <n>', 'the run seed recorded with the checkpoint (default 1)', intArg)
    .action(async (flags: { hf?: string; out?: string; grid?: GridSpec; data?: string; seed?: number }) => {
      const dir = need(flags.hf, '--hf DIR', 'import');
      const out = need(flags.out, '--out DIR', 'import');
      await initEngine('cpu');
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
