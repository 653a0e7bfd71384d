import type { LookupResult } from '../peer/peer-client.js';
import { PeerClient, LOOKUP_WAIT_MS } from '../peer/peer-client.js';
import { parseAddress } from '../protocol/address.js';
import type { PresenceBody } from '../protocol/frames.js';
import { createLogger } from '../runtime/logger.js';
import { integer, logFormatHelp, logLevel, name, parseFlags, positionals, required, wsUrl, type Command, type RunContext } from './args.js';
import { CliError, UsageError } from './errors.js';
import { CREDENTIAL_ENV, readCertificateFile, secretFromFileOrEnv } from './flag-files.js';
import { stopCleanly, watchShutdown } from './lifecycle.js';
import { emit, say } from './output.js';

const LOOKUP_HELP = `Usage: contact-point peer lookup ADDRESS --relay URL --id NAME (--credential-file FILE | env ${CREDENTIAL_ENV}) [flags]

Asks the relay, as external peer NAME, what is known of ADDRESS (docs/PROTOCOL.md 9.7): whether
its office is connected, and whether the peer is online, offline, unregistered, or hidden from
you by the office's access rules. Prints
  ADDRESS: office connected; peer online
With --watch it keeps a presence subscription and prints a line at once and on every change,
until interrupted (Ctrl-C, SIGTERM).

Flags:
  --relay URL              the relay, e.g. wss://relay.example.com/v1
  --id NAME                the external credential's id
  --credential-file FILE   its secret (never an argument: ps shows argv)
  --ca FILE                extra CA certificate (PEM) to trust for a wss:// relay
  --watch                  subscribe and print every change
  --timeout-ms N           how long to wait for the connection and the answer (default ${LOOKUP_WAIT_MS})
  --json                   one JSON object a line: {"event":"lookup"|"presence","address",...}
                           (--watch: a {"event":"ready"} line once subscribed)
  --log-level LEVEL        debug, info, warn, error or silent (default warn); logs go to stderr
${logFormatHelp(27)}
  -h, --help               this help
`;

function line(r: LookupResult | PresenceBody): string {
  return `${r.address}: office ${r.office ?? '?'}${r.peer ? `; peer ${r.peer}` : ''}${'reason' in r && r.reason ? ` (${r.reason})` : ''}`;
}

async function peerLookup(argv: string[], ctx: RunContext): Promise<number> {
  const { values, positionals: given } = parseFlags({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      relay: { type: 'string' },
      id: { type: 'string' },
      'credential-file': { type: 'string' },
      ca: { type: 'string' },
      watch: { type: 'boolean' },
      'timeout-ms': { type: 'string' },
      json: { type: 'boolean' },
      'log-level': { type: 'string' },
    },
  });
  const [address] = positionals(given, ['ADDRESS']);
  if (!parseAddress(address!)) throw new UsageError(`ADDRESS "${address}": expected NAME@DOMAIN such as printer@acme-hq`);
  const url = wsUrl('--relay', required('--relay', values.relay, "the relay's URL"), 'wss://relay.example.com/v1');
  const id = name('--id', required('--id', values.id, "the external peer's credential id"));
  const logger = createLogger({ level: logLevel('--log-level', values['log-level'] ?? 'warn'), format: ctx.logFormat });
  const secret = await secretFromFileOrEnv('--credential-file', values['credential-file'], CREDENTIAL_ENV, (m) => logger.warn(m));
  const ca = values.ca !== undefined ? (await readCertificateFile('--ca', values.ca)).pem : undefined;
  const timeoutMs = values['timeout-ms'] !== undefined ? integer('--timeout-ms', values['timeout-ms'], 1, 3_600_000) : LOOKUP_WAIT_MS;
  const json = values.json ?? false;
  const client = new PeerClient({ role: 'external', url, name: id, secret, logger, ...(ca ? { ca } : {}) });
  client.start();
  try {
    try {
      await client.ready(timeoutMs);
    } catch (err: unknown) {
      throw new CliError(`cannot connect to ${url}: ${(err as Error).message}`);
    }
    if (!values.watch) {
      const r = await client.lookup(address!, timeoutMs).catch((err: unknown) => {
        throw new CliError((err as Error).message);
      });
      if (json) emit('lookup', { ...r });
      else say(line(r));
      return 0;
    }
    const shutdown = watchShutdown();
    const unsubscribe = client.subscribePresence(address!, (p) => {
      if (json) emit('presence', { ...p });
      else say(line(p));
    });
    if (json) emit('ready', { address, as: client.address });
    await shutdown.signal;
    unsubscribe();
    shutdown.dispose();
    return 0;
  } finally {
    await stopCleanly('peer lookup', () => client.stop(), logger);
  }
}

export const peerLookupCommand: Command = {
  path: ['peer', 'lookup'],
  summary: 'ask the relay whether an office is connected and a peer online (--watch: every change)',
  help: LOOKUP_HELP,
  run: peerLookup,
};
