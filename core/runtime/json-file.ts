import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Errors from fsync on a directory that only mean "this file system does not do that" (some
 * network and FUSE file systems). The rename is still atomic there; anything else (EIO) fails
 * the write, since the new name may not survive a crash.
 */
const DIR_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Atomic, durable JSON state files: write a temp file of our own (O_EXCL, random name), fsync
 * it, rename it over the old one, fsync the folder so the rename itself is on disk. When this
 * resolves, the new content survives a crash or power loss; when it rejects (disk full, folder
 * gone or not writable), the old file is untouched and no temp file is left behind.
 */
export async function writeJsonAtomic(path: string, value: unknown, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err: unknown) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTDIR') throw err;
    throw Object.assign(new Error(`${dir} is not a folder (${code})`, { cause: err }), { code });
  }
  const text = JSON.stringify(value, null, 2) + '\n';
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err: unknown) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/** fsync a folder, so a rename in it is durable (Windows has no folder handles to sync; NTFS journals renames). */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (err: unknown) {
    if (!DIR_SYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await fh.close();
  }
}

/**
 * The reason of a failed file operation for a person: `ENOSPC: no space left on device`,
 * without Node's trailing `, rename '<temp file>' -> '<file>'`.
 */
export function ioReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/, [a-z]+ '.*$/s, '');
}

/** Reads a JSON file; undefined when it does not exist. Other failures (bad JSON, EACCES) throw. */
export async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err: unknown) {
    throw new Error(`${path} is not valid JSON (${(err as Error).message}); fix or move it away`, { cause: err });
  }
}
