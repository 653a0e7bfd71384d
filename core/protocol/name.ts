/**
 * The name grammar, defined once: peer names, contact point ids and external peer names are
 * 1-63 characters of `a-z 0-9 . _ -`, starting with a letter or digit, never containing `..`.
 * Lower-case only, so `Printer` and `printer` can never be two different peers.
 *
 * Every check of a name uses this module: the address parser, the frame schemas, the admin
 * contract, the host settings and the GUI's settings form. Plain TypeScript with no Node
 * imports, so the renderer may import it (lint allows it by name).
 */
import { MAX_NAME_LENGTH } from './limits.js';
import { str, type Schema } from './schema.js';

export { MAX_NAME_LENGTH };

/** The characters and their order; length is checked apart (MAX_NAME_LENGTH). */
export const NAME_PATTERN = /^(?!.*\.\.)[a-z0-9][a-z0-9._-]*$/;

/** What NAME_PATTERN asks for, said after the field's name (`id may use only ...`). */
export const NAME_RULE = 'may use only lower-case letters, digits, ".", "_" and "-", starting with a letter or digit, and no ".."';

export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_PATTERN.test(name);
}

/** Why a name is not acceptable, or undefined when it is. For CLI, config and form errors. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  if (!NAME_PATTERN.test(name)) return NAME_RULE;
  return undefined;
}

/** A name inside a schema-checked body (control frames, admin calls). */
export const nameSchema: Schema<string> = str({ min: 1, max: MAX_NAME_LENGTH, pattern: NAME_PATTERN, patternText: NAME_RULE });
