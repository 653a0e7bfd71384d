import { shellQuote } from '../admin/launch.js';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';

export { shellQuote };

/**
 * Where the CLI writes. stdout carries results (and, with --json, only JSON lines, one per
 * event); stderr carries logs, notes and errors, so `> file` and `| jq` see results only.
 */

export function say(line: string): void {
  process.stdout.write(line + '\n');
}

export function note(line: string): void {
  process.stderr.write(line + '\n');
}

/** One JSON object on one stdout line: `{"event":"ready",...}`. */
export function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

/** Left-aligned columns separated by two spaces. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}


/**
 * How a person runs this CLI again from the current folder: `contact-point` when it was
 * started through an installed or linked bin, else `node <path to bin/contact-point.js>`.
 */
export function selfCommand(): string {
  return selfWords().map(shellQuote).join(' ');
}

/** selfCommand() as words, unquoted. */
export function selfWords(): string[] {
  let script = process.argv[1] ?? 'contact-point';
  if (basename(script) === 'contact-point') return ['contact-point'];
  // `npm start` runs bin/start.js, which only starts the demo: the commands to try are the CLI's.
  if (basename(script) === 'start.js') script = join(dirname(script), 'contact-point.js');
  const rel = relative(process.cwd(), script);
  const shown = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : script;
  return ['node', shown];
}
