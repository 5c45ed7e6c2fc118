/**
 * netfilter/state-file.ts: the small JSON files in stateDir where each rules backend records
 * what existed before its first install (so uninstall removes only what it added). Written
 * atomically (temp file + rename, mode 0600); an unreadable or malformed file is an error that
 * says what to do, never silently ignored.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { GatewayError } from '../errors.js';

/** A TableRecord remembers what a table looked like before our first install touched it. */
export interface TableRecord {
  readonly existed: boolean;
  /** baseChains existing before, with their policy. */
  readonly baseChains: readonly string[];
}

/**
 * readStateFile returns the parsed file, undefined when it does not exist, and throws
 * ERR_RULES_APPLY when it cannot be read or `valid` refuses its shape. `what` names it.
 */
export async function readStateFile<T>(path: string, valid: (v: Partial<T>) => boolean, what: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GatewayError('ERR_RULES_APPLY', `cannot read ${path}`, { cause: e });
  }
  try {
    const v = JSON.parse(text) as Partial<T>;
    if (typeof v !== 'object' || v === null || !valid(v)) throw new Error('unexpected shape');
    return v as T;
  } catch (e) {
    throw new GatewayError('ERR_RULES_APPLY', `${path} is not a valid ${what}; remove it after checking the rules by hand`, { cause: e });
  }
}

/** writeStateFile writes value as JSON to path atomically (dir created 0700, file 0600); throws ERR_RULES_APPLY. */
export async function writeStateFile(dir: string, path: string, value: unknown): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  } catch (e) {
    throw new GatewayError('ERR_RULES_APPLY', `cannot write ${path}`, { cause: e });
  }
}
