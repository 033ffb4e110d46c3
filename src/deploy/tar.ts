/**
 * Reads the files of a tar archive (POSIX ustar, as `tar -cf` writes), so a whole checkpoint
 * folder can travel as one blob: a file upload in a browser, a single fetch, an ArrayBuffer.
 * Spec: https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
 */
const text = new TextDecoder();

function field(block: Uint8Array, offset: number, length: number): string {
  const bytes = block.subarray(offset, offset + length);
  const end = bytes.indexOf(0);
  return text.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** Regular files by path ('./' stripped); `where` names the archive in errors. */
export function readTar(bytes: Uint8Array, where = 'tar archive'): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  let longName: string | undefined;
  for (let at = 0; at + 512 <= bytes.length;) {
    const header = bytes.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break; // end-of-archive marker
    if (field(header, 257, 5) !== 'ustar') {
      throw new Error(
        `${where} is not a tar archive (no ustar header at byte ${at}); make one with 'tar -cf'`,
      );
    }
    const size = parseInt(field(header, 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(header[156] || 48);
    const prefix = field(header, 345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
    longName = undefined;
    const start = at + 512;
    if (!Number.isFinite(size) || start + size > bytes.length) {
      throw new Error(`${where}: '${name}' claims ${size} bytes but the archive ends first (truncated?)`);
    }
    const body = bytes.subarray(start, start + size);
    if (type === 'L')
      longName = field(body, 0, body.length); // GNU long name for the next entry
    else if (type === '0' || type === '7') files.set(name.replace(/^(\.\/)+/, ''), body);
    at = start + Math.ceil(size / 512) * 512;
  }
  return files;
}
