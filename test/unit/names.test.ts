import { describe, expect, it } from 'vitest';
import { checkHostSettings } from '../../core/admin/host-settings.js';
import { ADMIN_CALLS } from '../../core/admin/contract.js';
import { name as cliName } from '../../core/cli/args.js';
import { parseAddress } from '../../core/protocol/address.js';
import { helloSchema, peersSchema, reachableSchema } from '../../core/protocol/frames.js';
import { isValidName, NAME_RULE, nameProblem } from '../../core/protocol/name.js';
import { validateConnection } from '../../renderer/src/settings/validate-connection.js';

// The name grammar is defined once (core/protocol/name.ts). This feeds one list of names to
// every place that takes a name from outside and expects the same verdict everywhere.

const GOOD = ['a', '0', 'printer', 'acme-hq', 'scanner-2', 'a.b_c-d', 'a_b.c', '9lives', 'a.', 'a-', 'x'.repeat(63)];
const BAD = [
  '',
  'x'.repeat(64),
  `${'x'.repeat(62)}..`,
  'Printer',
  'ACME',
  '-a',
  '.a',
  '_a',
  '..',
  'a..b',
  'a..',
  '../etc',
  'a/b',
  'a\\b',
  'a b',
  'a\tb',
  'a\nb',
  'a@b',
  'a:b',
  'a,b',
  'ä',
  'printér',
  'ｐrinter',
  '😀',
  'a\u0000',
];

/** Each entry point, reduced to "accepts this name". */
const ENTRY_POINTS: Record<string, (n: string) => boolean> = {
  'isValidName': (n) => isValidName(n),
  'nameProblem': (n) => nameProblem(n) === undefined,
  'address, name part': (n) => parseAddress(`${n}@acme-hq`) !== undefined,
  'address, domain part': (n) => parseAddress(`printer@${n}`) !== undefined,
  'HELLO id': (n) => accepts(() => helloSchema.parse({ versions: { min: 1, max: 1 }, role: 'peer', id: n })),
  'PEERS names': (n) => accepts(() => peersSchema.parse({ op: 'add', names: [n] })),
  'REACHABLE domain': (n) => accepts(() => reachableSchema.parse({ domain: n })),
  'admin peers:approve': (n) => accepts(() => ADMIN_CALLS['peers:approve'].parse({ name: n })),
  'admin peers:revoke': (n) => accepts(() => ADMIN_CALLS['peers:revoke'].parse({ name: n })),
  'host settings id': (n) => checkHostSettings({ relayUrl: '', id: n, peerPort: 0 }).ok,
  'GUI settings form id': (n) => validateConnection({ relayUrl: '', id: n, peerPort: '0', credential: '' }, false).ok,
  'CLI name flag': (n) => accepts(() => cliName('--id', n)),
};

function accepts(parse: () => unknown): boolean {
  try {
    parse();
    return true;
  } catch {
    return false;
  }
}

describe('one name grammar at every entry point', () => {
  for (const [where, check] of Object.entries(ENTRY_POINTS)) {
    it(where, () => {
      for (const n of GOOD) expect(check(n), `${where} accepts ${JSON.stringify(n)}`).toBe(true);
      for (const n of BAD) expect(check(n), `${where} refuses ${JSON.stringify(n)}`).toBe(false);
    });
  }

  it('gives one reason for a name of the wrong shape, wherever it is checked', () => {
    expect(nameProblem('a..b')).toBe(NAME_RULE);
    expect(() => ADMIN_CALLS['peers:approve'].parse({ name: 'a..b' }, 'name')).toThrow(`name ${NAME_RULE}`);
    expect(() => reachableSchema.parse({ domain: 'Acme' }, 'REACHABLE')).toThrow(`REACHABLE.domain ${NAME_RULE}`);
    expect(checkHostSettings({ relayUrl: '', id: 'a..b', peerPort: 0 })).toEqual({ ok: false, errors: { id: NAME_RULE } });
    const form = validateConnection({ relayUrl: '', id: 'a..b', peerPort: '0', credential: '' }, false);
    expect(form).toEqual({ ok: false, errors: { id: `M${NAME_RULE.slice(1)}.` } });
  });

  it('lets the settings forms trim what surrounds the id (the address parser does not)', () => {
    expect(checkHostSettings({ relayUrl: '', id: ' acme-hq\n', peerPort: 0 })).toEqual({ ok: true, value: { relayUrl: '', id: 'acme-hq', peerPort: 0 } });
    expect(validateConnection({ relayUrl: '', id: ' acme-hq ', peerPort: '0', credential: '' }, false)).toMatchObject({ ok: true, value: { id: 'acme-hq' } });
    expect(parseAddress(' printer@acme-hq')).toBeUndefined();
  });
});
