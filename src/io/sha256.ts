/** SHA-256 as lowercase hex, the same in Node and the browser (checkpoint hashes). */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

export const sha256Hex = (bytes: Uint8Array): string => bytesToHex(sha256(bytes));
