/** `sortednet compare`: accuracy of every sub-model under several runs, and their training time. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { accuracyFlopsSvg } from '../../io/report.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { readEvalRows, readRunJson } from '../../run/run_folder.js';
import { defaultTrainConfig } from '../../train/config.js';

export const registerCompare: RegisterCommand = (program, exit) => {
  program
    .command('compare')
    .description('accuracy vs FLOPs of several runs side by side (table + SVG)')
    .option('--runs <dirs>', 'comma-separated run folders')
    .option('--out <file>', 'the SVG to write', 'compare.svg')
    .option('--force', 'overwrite --out if it exists')
    .action(async (flags: { runs?: string; out: string; force?: boolean }) => {
      const runs = need(flags.runs, '--runs DIR,DIR,...', 'compare').split(',').filter(Boolean);
      if (runs.length === 0) throw new Error(`compare --runs '${flags.runs}' names no run folder`);
      if (existsSync(flags.out) && !flags.force)
        throw new Error(`${flags.out} exists; choose another --out, or add --force to overwrite it`);
      // A run is named by its strategy (the default one when run.json leaves it out); by its folder
      // when there is no run.json or two runs share a strategy.
      const strategies = runs.map((r) =>
        existsSync(join(r, 'run.json')) ? (readRunJson(r).train?.strategy ?? defaultTrainConfig.strategy) : r,
      );
      const series = runs.map((r, i) => ({
        name: strategies.indexOf(strategies[i]) === strategies.lastIndexOf(strategies[i]) ? strategies[i] : r,
        rows: readEvalRows(r),
        dir: r,
      }));
      // One table: accuracy of every sub-model under every run, then each run's training time.
      const ids = series[0].rows.map((r) => r.id);
      const acc = series.map((s) => new Map(s.rows.map((r) => [r.id, r.accuracy])));
      const first = series[0].name;
      const rest = series.slice(1);
      console.log(
        `| sub-model | MFLOPs | ${series.map((s) => s.name).join(' | ')} | ${rest.map((s) => `${first} / ${s.name}`).join(' | ')} |`,
      );
      console.log(`|---|---:|${series.map(() => '---:').join('|')}|${rest.map(() => '---:').join('|')}|`);
      for (const [i, id] of ids.entries()) {
        const a = acc.map((m) => m.get(id));
        const pct = a.map((v) => (v === undefined ? '—' : (100 * v).toFixed(2)));
        const ratios = a
          .slice(1)
          .map((v) => (v === undefined || a[0] === undefined ? '—' : (a[0] / v).toFixed(3)));
        console.log(
          `| ${id} | ${(series[0].rows[i].flops / 1e6).toFixed(2)} | ${pct.join(' | ')} | ${ratios.join(' | ')} |`,
        );
      }
      const seconds = series.map((s) =>
        existsSync(join(s.dir, 'train_time.json'))
          ? (JSON.parse(readFileSync(join(s.dir, 'train_time.json'), 'utf8')).seconds as number)
          : NaN,
      );
      console.log(
        `| training time (s) | | ${seconds.map((t) => t.toFixed(1)).join(' | ')} | ${seconds
          .slice(1)
          .map((t) => (seconds[0] / t).toFixed(2))
          .join(' | ')} |`,
      );
      writeFileAtomic(flags.out, accuracyFlopsSvg(series, 'accuracy vs FLOPs per strategy'));
      console.log(`\nwrote ${flags.out}`);
      exit(0);
    });
};
