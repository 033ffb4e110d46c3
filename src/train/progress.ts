/** A one-line progress bar on stderr: step, loss, samples/s, ETA. Silent when stderr is not a TTY. */
export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = performance.now();
  private lastDraw = 0;
  constructor(private readonly total: number) {}

  update(done: number, total: number, loss: number, samplesPerSecond: number): void {
    const now = performance.now();
    if (now - this.lastDraw < 200 && done < total) return;
    this.lastDraw = now;
    const frac = done / total;
    const elapsed = (now - this.t0) / 1000;
    const eta = frac > 0 ? elapsed * (1 / frac - 1) : 0;
    const width = 24;
    const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '·');
    const line = `${bar} ${done}/${total} loss ${loss.toFixed(4)} ${samplesPerSecond.toFixed(0)} samples/s ETA ${fmt(eta)}`;
    if (this.tty) process.stderr.write(`\r${line}`);
    else if (done === total || done % Math.max(1, Math.floor(total / 10)) === 0)
      process.stderr.write(`${line}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

function fmt(s: number): string {
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60)}s` : `${Math.round(s)}s`;
}
