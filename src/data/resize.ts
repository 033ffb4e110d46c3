/**
 * Area resampling of an HWC image: each output pixel is the mean of the input area it covers
 * (fractional edges weighted), so a 280×280 drawing shrinks to 28×28 without aliasing and a small
 * image grows by replication. Plain arrays; no file system, usable in a browser.
 */
export function resizeArea(
  pixels: Float32Array,
  height: number,
  width: number,
  channels: number,
  outHeight: number,
  outWidth: number,
): Float32Array {
  if (height === outHeight && width === outWidth) return pixels;
  const out = new Float32Array(outHeight * outWidth * channels);
  const sy = height / outHeight;
  const sx = width / outWidth;
  for (let oy = 0; oy < outHeight; oy++) {
    const y0 = oy * sy;
    const y1 = y0 + sy;
    for (let ox = 0; ox < outWidth; ox++) {
      const x0 = ox * sx;
      const x1 = x0 + sx;
      const o = (oy * outWidth + ox) * channels;
      for (let y = Math.floor(y0); y < Math.min(height, Math.ceil(y1)); y++) {
        const wy = Math.min(y + 1, y1) - Math.max(y, y0);
        for (let x = Math.floor(x0); x < Math.min(width, Math.ceil(x1)); x++) {
          const w = wy * (Math.min(x + 1, x1) - Math.max(x, x0));
          const i = (y * width + x) * channels;
          for (let k = 0; k < channels; k++) out[o + k] += w * pixels[i + k];
        }
      }
      const area = sy * sx;
      for (let k = 0; k < channels; k++) out[o + k] /= area;
    }
  }
  return out;
}

/** Grey to colour repeats the value; colour to grey takes the luma of ITU-R BT.601; alpha is dropped. */
export function convertChannels(pixels: Float32Array, count: number, from: number, to: 1 | 3): Float32Array {
  if (from === to) return pixels;
  const out = new Float32Array(count * to);
  for (let i = 0; i < count; i++) {
    const p = i * from;
    if (to === 3) {
      for (let k = 0; k < 3; k++) out[i * 3 + k] = pixels[p + (from === 1 ? 0 : k)];
    } else {
      out[i] = from < 3 ? pixels[p] : 0.299 * pixels[p] + 0.587 * pixels[p + 1] + 0.114 * pixels[p + 2];
    }
  }
  return out;
}
