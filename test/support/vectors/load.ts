/**
 * load.ts: typed access to the known-answer vector files next to it. Files are found from
 * the project root (the directory holding package.json), so this works both under tsx from
 * the sources and compiled under dist/.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** DraftVector is one AES-GCM-ESP case of draft-mcgrew-gcm-test-01 §4 (hex strings). */
export interface DraftVector {
  name: string;
  source: string;
  algorithm: 'aes128gcm16' | 'aes192gcm16' | 'aes256gcm16';
  key: string;
  salt: string;
  spi: string;
  seq: string;
  esn: boolean;
  nonce: string;
  iv: string;
  plaintext: string;
  aad: string;
  ctextTag: string;
  packet: string;
}

/** KernelVector is one AEAD-level entry of the Linux kernel's aes_gcm_rfc4106_tv_template. */
export interface KernelVector {
  name: string;
  source: string;
  algorithm: 'aes128gcm16' | 'aes192gcm16' | 'aes256gcm16';
  keyMaterial: string;
  iv: string;
  aad: string;
  plaintext: string;
  ctextTag: string;
}

/** projectRoot walks up from this file to the directory that holds package.json. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 12; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error('project root (package.json) not found above ' + fileURLToPath(import.meta.url));
}

/** vectorPath is the path of a file in test/support/vectors (the sources, also when running from dist/). */
export function vectorPath(file: string): string {
  return join(projectRoot(), 'test', 'support', 'vectors', file);
}

/** hex decodes a hex string (whitespace ignored). */
export function hex(s: string): Uint8Array {
  const t = s.replace(/\s+/g, '');
  if (t.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(t)) throw new Error(`bad hex: ${s}`);
  return Uint8Array.from(Buffer.from(t, 'hex'));
}

/** toHex encodes bytes as lowercase hex. */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function readVectors(file: string, fields: readonly string[]): Record<string, unknown>[] {
  const doc = JSON.parse(readFileSync(vectorPath(file), 'utf8')) as { source?: unknown; vectors?: unknown };
  if (typeof doc.source !== 'string' || !Array.isArray(doc.vectors)) throw new Error(`${file}: no source or vectors`);
  const out: Record<string, unknown>[] = [];
  for (const v of doc.vectors as unknown[]) {
    if (typeof v !== 'object' || v === null) throw new Error(`${file}: vector is not an object`);
    const rec = v as Record<string, unknown>;
    for (const f of fields) {
      if (typeof rec[f] !== 'string') throw new Error(`${file}: vector ${String(rec.name)} lacks string field ${f}`);
    }
    out.push(rec);
  }
  return out;
}

/** loadDraftVectors reads draft-mcgrew-gcm-test-01.json. */
export function loadDraftVectors(): DraftVector[] {
  const fields = ['name', 'source', 'algorithm', 'key', 'salt', 'spi', 'seq', 'nonce', 'iv', 'plaintext', 'aad', 'ctextTag', 'packet'];
  return readVectors('draft-mcgrew-gcm-test-01.json', fields).map((r) => {
    if (typeof r.esn !== 'boolean') throw new Error(`draft vector ${String(r.name)} lacks esn`);
    return r as unknown as DraftVector;
  });
}

/** loadKernelVectors reads linux-testmgr-rfc4106.json. */
export function loadKernelVectors(): KernelVector[] {
  const fields = ['name', 'source', 'algorithm', 'keyMaterial', 'iv', 'aad', 'plaintext', 'ctextTag'];
  return readVectors('linux-testmgr-rfc4106.json', fields) as unknown as KernelVector[];
}

/**
 * offsetView copies bytes into the middle of a larger buffer and returns a view of them, so a
 * codec under test sees a non-zero byteOffset (the undici DataView bug class, STYLE.md).
 */
export function offsetView(bytes: Uint8Array, lead = 13, tail = 7): Uint8Array {
  const backing = new Uint8Array(lead + bytes.length + tail).fill(0xa5);
  backing.set(bytes, lead);
  return backing.subarray(lead, lead + bytes.length);
}
