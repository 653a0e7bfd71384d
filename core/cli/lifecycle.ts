import type { Logger } from '../runtime/logger.js';
import { ExitCode } from './errors.js';
import { note } from './output.js';

/**
 * Long-running commands (relay, serve, start, peer join) run until SIGINT or SIGTERM, then
 * stop cleanly and exit 0. A second signal while stopping exits at once; a stop that hangs
 * past its grace period exits 1.
 */

/** How long a clean stop may take before the process gives up on it. */
export const STOP_GRACE_MS = 5_000;

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export interface ShutdownWatch {
  /** resolves with the first SIGINT/SIGTERM */
  readonly signal: Promise<NodeJS.Signals>;
  /** stops listening (when the command ends for another reason) */
  dispose(): void;
}

export function watchShutdown(): ShutdownWatch {
  let onSignal: (sig: NodeJS.Signals) => void = () => undefined;
  const signal = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (sig) => {
      dispose();
      resolve(sig);
    };
  });
  const dispose = (): void => {
    for (const s of SIGNALS) process.off(s, onSignal);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  return { signal, dispose };
}

/**
 * Runs `stop` within STOP_GRACE_MS; a second signal meanwhile exits at once. Resolves with the
 * exit code. Its notes go to `logger` when given (the command's, in its --log-format).
 */
export async function stopCleanly(what: string, stop: () => Promise<void>, logger?: Logger, graceMs = STOP_GRACE_MS): Promise<number> {
  const warn = (msg: string): void => (logger ? logger.warn(msg) : note(msg));
  const force = (sig: NodeJS.Signals): void => {
    warn(`${sig} again: exiting without waiting for the ${what} to stop`);
    process.exit(ExitCode.FAILURE);
  };
  for (const s of SIGNALS) process.on(s, force);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([stop().then(() => 'stopped' as const), timedOut]);
    if (outcome === 'timeout') {
      warn(`the ${what} did not stop within ${graceMs} ms; exiting anyway`);
      return ExitCode.FAILURE;
    }
    return ExitCode.OK;
  } catch (err: unknown) {
    if (logger) logger.error(`error while stopping the ${what}`, { error: err });
    else note(`error while stopping the ${what}: ${(err as Error).message}`);
    return ExitCode.FAILURE;
  } finally {
    clearTimeout(timer);
    for (const s of SIGNALS) process.off(s, force);
  }
}

/**
 * Once a command has finished, nothing should keep the process alive; if a stray handle does
 * (a socket a library forgot), exit anyway after a moment instead of hanging a script.
 */
export function exitSoonIfStuck(code: number, afterMs = 2_000): void {
  setTimeout(() => process.exit(code), afterMs).unref();
}
