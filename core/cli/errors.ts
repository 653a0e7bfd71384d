/**
 * How the CLI fails. Every command returns one of these exit codes; scripts and tests rely on
 * them, so they are part of the interface (README "Exit codes").
 */
export const ExitCode = {
  OK: 0,
  /** something went wrong at run time: unreachable endpoint, refused credential, I/O error */
  FAILURE: 1,
  /** the command line is wrong: unknown flag, bad value, missing input */
  USAGE: 2,
  /** `peer send`: the message was refused; `expose`: the relay or contact point refused (the numbered status is printed) */
  REFUSED: 3,
  /** `peer send --wait-reply`: delivered, but no reply came in time */
  NO_REPLY: 4,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** A bad command line. The message names the flag, the value and why; exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A run-time failure worth a one-line message and no stack trace; exit code 1 unless given. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.FAILURE,
  ) {
    super(message);
  }
}
