// The root token and, outside production, HERALD_SECRET are generated on first start and kept in
// the data dir (mode 0600), so that a restart keeps them.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Secrets {
  rootToken: string;
  secret: string;
  /** The root token was generated just now: print it, once. */
  rootTokenIsNew: boolean;
}

export async function loadSecrets(dataDir: string, given: { rootToken?: string | undefined; secret?: string | undefined }): Promise<Secrets> {
  await mkdir(dataDir, { recursive: true });
  const root = given.rootToken ? { value: given.rootToken, isNew: false } : await readOrCreate(join(dataDir, 'root-token'), () => `hr_${randomBytes(32).toString('base64url')}`);
  const secret = given.secret ?? (await readOrCreate(join(dataDir, 'secret'), () => randomBytes(48).toString('base64url'))).value;
  return { rootToken: root.value, secret, rootTokenIsNew: root.isNew };
}

async function readOrCreate(path: string, make: () => string): Promise<{ value: string; isNew: boolean }> {
  const value = make();
  try {
    await writeFile(path, `${value}\n`, { mode: 0o600, flag: 'wx' });
    return { value, isNew: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { value: (await readFile(path, 'utf8')).trim(), isNew: false };
  }
}
