/**
 * How the content check reads for a person, shared by `contact-point rules` and the GUI's
 * Settings and peer page. Plain TypeScript, no Node imports (the renderer imports it).
 */
import type { ContentCheckView } from './contract.js';

/** `none`, `built-in: JSON nested at most 32 levels`, `command /usr/local/bin/scan (2000 ms a message, fail-closed, 16 at once)`. */
export function checkText(c: ContentCheckView | undefined): string {
  if (!c || c.kind === 'none') return 'none';
  if (c.kind === 'json-depth') return `built-in: JSON nested at most ${c.depth} levels`;
  return `command ${c.argv.join(' ')} (${c.timeoutMs} ms a message, fail-${c.failure}, ${c.concurrency} at once)`;
}
