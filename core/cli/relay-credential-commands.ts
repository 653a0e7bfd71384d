import { join } from 'node:path';
import { CREDENTIALS_FILE, CredentialStore, type CredentialKind, type Right } from '../relay/credentials.js';
import { createLogger } from '../runtime/logger.js';
import { clusterReplicas, listOf, name, natsUrls, oneOf, parseFlags, required, type Command } from './args.js';
import { CliError, UsageError } from './errors.js';
import { writeSecretFile } from './flag-files.js';
import { emit, formatTable, note, say } from './output.js';
import { resolveStateDir } from './state-dir.js';

/** `contact-point relay credential add|list|remove`: the relay's credential store, offline. */

const KINDS = ['contact-point', 'external'] as const satisfies readonly CredentialKind[];
const RIGHTS = ['send', 'mediate'] as const satisfies readonly Right[];
const LIVE = 'A running relay using this state folder applies it within seconds, without a restart.';
const LIVE_CLUSTER = 'Every node of the cluster applies it at once, without a restart.';

const STATE_FLAG = `  --state DIR                     the relay's state folder (default ~/.contact-point/relay,
                                  or $CONTACT_POINT_STATE)
  --cluster URL[,URL]             a relay cluster's NATS server(s) instead of a state folder:
                                  the credentials every node uses (e.g. nats://10.0.0.5:4222)
  --cluster-replicas N            JetStream replicas of the credentials bucket if this creates
                                  it (default 1; 3 on a 3-server NATS cluster)`;

interface OpenStore {
  readonly store: CredentialStore;
  /** where it is, for messages */
  readonly where: string;
  readonly live: string;
  close(): Promise<void>;
}

/** The state folder's credentials.json, or with --cluster the cluster's bucket. */
async function openStore(values: { state?: string | undefined; cluster?: string | undefined; 'cluster-replicas'?: string | undefined }): Promise<OpenStore> {
  const replicas = clusterReplicas(values['cluster-replicas'], values.cluster !== undefined);
  if (values.cluster !== undefined) {
    if (values.state !== undefined) throw new UsageError('--state and --cluster cannot be used together (a cluster keeps its credentials in NATS)');
    const servers = natsUrls('--cluster', values.cluster);
    const logger = createLogger({ level: 'error' });
    const { connectNats, openClusterCredentials } = await import('../relay/cluster-nats.js');
    let nc;
    try {
      nc = await connectNats(servers, 'contact-point relay credential', logger);
      const creds = await openClusterCredentials(nc, logger, replicas);
      const conn = nc;
      return {
        store: creds.store,
        where: `the cluster ${servers.join(',')}`,
        live: LIVE_CLUSTER,
        close: async () => {
          creds.stop();
          await conn.drain().catch(() => conn.close());
        },
      };
    } catch (err: unknown) {
      await nc?.close();
      throw new CliError((err as Error).message);
    }
  }
  const stateDir = resolveStateDir('relay', values.state);
  try {
    return { store: await CredentialStore.open(stateDir), where: join(stateDir, CREDENTIALS_FILE), live: LIVE, close: () => Promise.resolve() };
  } catch (err: unknown) {
    throw new CliError(`cannot load the relay's credentials: ${(err as Error).message}`);
  }
}

const ADD_HELP = `Usage: contact-point relay credential add --kind contact-point|external --id ID [flags]

Creates a credential in the relay's store and prints its secret on stdout, once: the store
keeps only its SHA-256 hash. Give the secret to the contact point (serve --credential-file)
or the external peer (peer send --credential-file). Adding an existing kind+id replaces it:
the old secret stops working.

Flags:
  --kind contact-point|external   who it is for: a contact point (by its id) or an external peer
  --id ID                         the contact point id (acme-hq) or external peer name (alice):
                                  a-z, 0-9, ".", "_", "-"
  --rights LIST                   comma-separated (default send): send = send messages;
                                  mediate = drive port mediation as an operator (external
                                  only: contact-point expose, the operator SDK)
  --out FILE                      write the secret to FILE (mode 0600) instead of stdout
${STATE_FLAG}
  --json                          print {"kind","id","rights","secret"} as one JSON line
  -h, --help                      this help

Examples:
  contact-point relay credential add --kind contact-point --id acme-hq --out acme-hq.credential
  contact-point relay credential add --kind external --id tech --rights send,mediate --out tech.credential
`;

async function add(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      kind: { type: 'string' },
      id: { type: 'string' },
      rights: { type: 'string' },
      out: { type: 'string' },
      state: { type: 'string' },
      cluster: { type: 'string' },
      'cluster-replicas': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const kind = oneOf('--kind', required('--kind', values.kind, 'contact-point or external'), KINDS);
  const id = name('--id', required('--id', values.id));
  const rights = listOf('--rights', values.rights ?? 'send', RIGHTS);
  if (values.out !== undefined) {
    // Prove the file is writable before the store changes: a replaced secret cannot be restored.
    await writeSecretFile(values.out, '').catch((err: unknown) => {
      throw new CliError(`--out "${values.out}": cannot write there (${(err as Error).message}); nothing was added`);
    });
  }
  const open = await openStore(values);
  const store = open.store;
  const replaced = store.has(kind, id);
  let secret: string;
  try {
    secret = await store.add(kind, id, rights);
  } catch (err: unknown) {
    throw new CliError(`cannot save the credential in ${open.where}: ${(err as Error).message}; nothing was added`);
  } finally {
    await open.close();
  }
  if (values.out !== undefined) {
    await writeSecretFile(values.out, secret);
    if (values.json) emit('credential', { kind, id, rights, file: values.out });
    else say(`${kind} "${id}": secret written to ${values.out} (mode 0600)`);
  } else if (values.json) {
    emit('credential', { kind, id, rights, secret });
  } else {
    say(secret);
  }
  note(`note: the secret is shown only now (the relay keeps only its hash); store it in a file with mode 0600. ${open.live}`);
  if (replaced) note(`note: this replaced the earlier ${kind} credential "${id}"; its old secret no longer works, and a running relay closes the sessions that used it.`);
  // The relay cannot know an office's key (nor should it vouch for one): the office's admin hands it over.
  if (kind === 'external') note('note: hand it over with the fingerprint of each contact point this peer talks to (its admin runs contact-point fingerprint), for peer send --pin FINGERPRINT: then no relay can pose as that office.');
  return 0;
}

const LIST_HELP = `Usage: contact-point relay credential list [flags]

Lists the relay's credentials: kind, id, rights and creation time. Secrets are never
stored, and hashes are never shown.

Flags:
${STATE_FLAG}
  --json                          print a JSON array
  -h, --help                      this help
`;

async function list(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: { state: { type: 'string' }, cluster: { type: 'string' }, 'cluster-replicas': { type: 'string' }, json: { type: 'boolean' } } });
  const open = await openStore(values);
  await open.close();
  const records = open.store.list().map((r) => ({ kind: r.kind, id: r.id, rights: r.rights, created: r.created }));
  if (values.json) {
    say(JSON.stringify(records));
  } else if (records.length === 0) {
    note(`no credentials in ${open.where}`);
  } else {
    say(formatTable(['KIND', 'ID', 'RIGHTS', 'CREATED'], records.map((r) => [r.kind, r.id, r.rights.join(','), r.created])));
  }
  return 0;
}

const REMOVE_HELP = `Usage: contact-point relay credential remove --kind contact-point|external --id ID [flags]

Deletes a credential: its secret no longer connects, and a running relay closes the sessions
that use it within seconds (an operator's exposures and LAN ports with them).

Flags:
  --kind contact-point|external
  --id ID
${STATE_FLAG}
  -h, --help                      this help
`;

async function remove(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: { kind: { type: 'string' }, id: { type: 'string' }, state: { type: 'string' }, cluster: { type: 'string' }, 'cluster-replicas': { type: 'string' } },
  });
  const kind = oneOf('--kind', required('--kind', values.kind, 'contact-point or external'), KINDS);
  const id = name('--id', required('--id', values.id));
  const open = await openStore(values);
  let removed: boolean;
  try {
    removed = await open.store.remove(kind, id);
  } catch (err: unknown) {
    throw new CliError(`cannot remove the credential from ${open.where}: ${(err as Error).message}`);
  } finally {
    await open.close();
  }
  if (!removed) throw new CliError(`there is no ${kind} credential "${id}" in ${open.where}`);
  say(`removed the ${kind} credential "${id}"`);
  note(open.live);
  return 0;
}

export const credentialCommands: Command[] = [
  { path: ['relay', 'credential', 'add'], summary: 'create a credential and print its secret once', help: ADD_HELP, run: add },
  { path: ['relay', 'credential', 'list'], summary: 'list credentials (never secrets)', help: LIST_HELP, run: list },
  { path: ['relay', 'credential', 'remove'], summary: 'delete a credential', help: REMOVE_HELP, run: remove },
];
