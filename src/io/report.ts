/** Evaluation reports: a text table, CSV, and an SVG plot of accuracy against FLOPs. */
import type { EvalRow } from '../train/evaluate.js';

export function formatTable(rows: readonly EvalRow[]): string {
  const head = ['sub-model', 'params', 'MFLOPs', 'FLOPs %', 'accuracy %', 'latency ms'];
  const body = rows.map((r) => [
    r.id,
    String(r.params),
    (r.flops / 1e6).toFixed(2),
    (100 * r.flopsFraction).toFixed(1),
    (100 * r.accuracy).toFixed(2),
    r.latencyMs.toFixed(3),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export function toCsv(rows: readonly EvalRow[]): string {
  const lines = ['id,params,flops,flops_fraction,accuracy,latency_ms'];
  for (const r of rows)
    lines.push([JSON.stringify(r.id), r.params, r.flops, r.flopsFraction, r.accuracy, r.latencyMs].join(','));
  return lines.join('\n') + '\n';
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2'];

/** Accuracy (y) against MFLOPs (x, log scale), one series per run; points of a series joined in FLOP order. */
export function accuracyFlopsSvg(
  series: { name: string; rows: readonly EvalRow[] }[],
  title = 'accuracy vs FLOPs',
): string {
  const W = 640;
  const H = 420;
  const m = { l: 60, r: 160, t: 36, b: 48 };
  const all = series.flatMap((s) => s.rows);
  const xs = all.map((r) => Math.log10(Math.max(r.flops, 1)));
  const ys = all.map((r) => 100 * r.accuracy);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) + 1e-9];
  const yLo = Math.floor(Math.min(...ys) / 5) * 5;
  const yHi = Math.min(100, Math.ceil(Math.max(...ys) / 5) * 5);
  const px = (f: number) => m.l + ((Math.log10(Math.max(f, 1)) - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (a: number) => H - m.b - ((100 * a - yLo) / (yHi - yLo || 1)) * (H - m.t - m.b);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.r / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(W - m.r + m.l) / 2}" y="${H - 10}" text-anchor="middle">MFLOPs per sample (log scale)</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">accuracy %</text>`,
  ];
  const yStep = [1, 2, 5, 10, 20].find((st) => (yHi - yLo) / st <= 8) ?? 25;
  for (let y = Math.ceil(yLo / yStep) * yStep; y <= yHi; y += yStep) {
    out.push(`<line x1="${m.l - 4}" y1="${py(y / 100)}" x2="${W - m.r}" y2="${py(y / 100)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 8}" y="${py(y / 100) + 4}" text-anchor="end">${y}</text>`);
  }
  for (let e = Math.ceil(x0 * 2) / 2; e <= x1; e += 0.5) {
    const f = 10 ** e;
    out.push(
      `<text x="${px(f)}" y="${H - m.b + 16}" text-anchor="middle">${(f / 1e6).toPrecision(2)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = [...s.rows].sort((a, b) => a.flops - b.flops);
    // The frontier: best accuracy reachable at each FLOP budget, as search-free selection sees it.
    const d = pts
      .map((r, j) => `${j ? 'L' : 'M'}${px(r.flops).toFixed(1)},${py(r.accuracy).toFixed(1)}`)
      .join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1" stroke-opacity="0.5"/>`);
    for (const r of pts)
      out.push(
        `<circle cx="${px(r.flops).toFixed(1)}" cy="${py(r.accuracy).toFixed(1)}" r="3" fill="${c}"><title>${escapeXml(r.id)}: ${(100 * r.accuracy).toFixed(2)}%</title></circle>`,
      );
    out.push(`<rect x="${W - m.r + 12}" y="${m.t + 18 * i}" width="10" height="10" fill="${c}"/>`);
    out.push(`<text x="${W - m.r + 28}" y="${m.t + 18 * i + 9}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}
