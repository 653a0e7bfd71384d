import { join } from 'node:path';
import { CREDENTIALS_FILE, CredentialStore, type CredentialKind, type Right } from '../relay/credentials.js';
import { createLogger } from '../runtime/logger.js';
import { clusterReplicas, listOf, name, natsUrls, oneOf, parseFlags, required, type Command } from './args.js';
import { CliError, UsageError } from './errors.js';
import { writeSecretFile } from './flag-files.js';
import { emit, formatTable, note, say } from './output.js';
import { resolveStateDir } from './state-dir.js';
import { DIRECT_DIR } from '../contact-point/direct-mode.js';

/**
 * `contact-point relay credential add|list|remove`: the relay's credential store, offline; and
 * `contact-point credential add|list|remove`: the same store format for a contact point's
 * direct mode (<state>/direct/credentials.json, external peers only). One add, list and remove
 * for both (`Target` says which store, which kinds, which words).
 */

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

type StoreFlags = { state?: string | undefined; cluster?: string | undefined; 'cluster-replicas'?: string | undefined };

/** Whose store the commands manage: the relay's, or a contact point's for direct mode. */
interface Target {
  /** the words before add/list/remove */
  readonly words: readonly string[];
  /** the kinds it holds; with one, --kind may be left out */
  readonly kinds: readonly CredentialKind[];
  /** --cluster and --cluster-replicas are taken */
  readonly cluster: boolean;
  /** "the relay", "the contact point", for messages */
  readonly owner: string;
  open(values: StoreFlags): Promise<OpenStore>;
}

/** The state folder's credentials.json, or with --cluster the cluster's bucket. */
async function openStore(values: StoreFlags): Promise<OpenStore> {
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

/** --state, and --cluster/--cluster-replicas where the target takes them. */
function storeOptions(t: Target): Record<string, { type: 'string' }> {
  return { state: { type: 'string' }, ...(t.cluster ? { cluster: { type: 'string' }, 'cluster-replicas': { type: 'string' } } : {}) };
}

/** --kind: required where the store holds several kinds. */
function kindOf(t: Target, value: string | undefined): CredentialKind {
  if (t.kinds.length === 1 && value === undefined) return t.kinds[0]!;
  return oneOf('--kind', required('--kind', value, t.kinds.join(' or ')), t.kinds);
}

async function add(t: Target, argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      kind: { type: 'string' },
      id: { type: 'string' },
      rights: { type: 'string' },
      out: { type: 'string' },
      ...storeOptions(t),
      json: { type: 'boolean' },
    },
  });
  const kind = kindOf(t, values.kind as string | undefined);
  const id = name('--id', required('--id', values.id as string | undefined));
  const rights = listOf('--rights', (values.rights as string | undefined) ?? 'send', RIGHTS);
  const out = values.out as string | undefined;
  if (out !== undefined) {
    // Prove the file is writable before the store changes: a replaced secret cannot be restored.
    await writeSecretFile(out, '').catch((err: unknown) => {
      throw new CliError(`--out "${out}": cannot write there (${(err as Error).message}); nothing was added`);
    });
  }
  const open = await t.open(values as StoreFlags);
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
  if (out !== undefined) {
    await writeSecretFile(out, secret);
    if (values.json) emit('credential', { kind, id, rights, file: out });
    else say(`${kind} "${id}": secret written to ${out} (mode 0600)`);
  } else if (values.json) {
    emit('credential', { kind, id, rights, secret });
  } else {
    say(secret);
  }
  note(`note: the secret is shown only now (${t.owner} keeps only its hash); store it in a file with mode 0600. ${open.live}`);
  if (replaced) note(`note: this replaced the earlier ${kind} credential "${id}"; its old secret no longer works, and a running ${t.owner.replace(/^the /, '')} closes the sessions that used it.`);
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

async function list(t: Target, argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: { ...storeOptions(t), json: { type: 'boolean' } } });
  const open = await t.open(values as StoreFlags);
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

async function remove(t: Target, argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: { kind: { type: 'string' }, id: { type: 'string' }, ...storeOptions(t) },
  });
  const kind = kindOf(t, values.kind as string | undefined);
  const id = name('--id', required('--id', values.id as string | undefined));
  const open = await t.open(values as StoreFlags);
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

const RELAY: Target = { words: ['relay', 'credential'], kinds: KINDS, cluster: true, owner: 'the relay', open: openStore };

const DIRECT_LIVE = 'A running contact point (serve --direct-listen) using this state folder applies it within seconds, without a restart.';
const DIRECT: Target = {
  words: ['credential'],
  kinds: ['external'],
  cluster: false,
  owner: 'the contact point',
  open: async (values) => {
    const dir = join(resolveStateDir('serve', values.state), DIRECT_DIR);
    try {
      return { store: await CredentialStore.open(dir), where: join(dir, CREDENTIALS_FILE), live: DIRECT_LIVE, close: () => Promise.resolve() };
    } catch (err: unknown) {
      throw new CliError(`cannot load the contact point's direct credentials: ${(err as Error).message}`);
    }
  },
};

const DIRECT_STATE_FLAG = `  --state DIR                     the contact point's state folder, as given to serve (default
                                  ~/.contact-point/serve, or $CONTACT_POINT_STATE)`;

const DIRECT_ADD_HELP = `Usage: contact-point credential add --id NAME [flags]

Direct mode (serve --direct-listen): creates a credential for an external peer or operator who
connects to this contact point itself, with no relay, and prints its secret on stdout, once:
the contact point keeps only its SHA-256 hash, in <state>/${DIRECT_DIR}/${CREDENTIALS_FILE}
(mode 0600). The peer connects with --relay wss://HOST:PORT/v1 (the direct listener) and is
NAME@direct. Adding an existing name replaces it: the old secret stops working, and its live
sessions are closed.

Flags:
  --id NAME                       the external peer's name (alice): a-z, 0-9, ".", "_", "-"
  --rights LIST                   comma-separated (default send): send = send messages;
                                  mediate = drive port mediation as an operator (within the
                                  contact point's port policy)
  --out FILE                      write the secret to FILE (mode 0600) instead of stdout
  --kind external                 the only kind here (accepted for symmetry with relay credential)
${DIRECT_STATE_FLAG}
  --json                          print {"kind","id","rights","secret"} as one JSON line
  -h, --help                      this help

Examples:
  contact-point credential add --id alice --out alice.credential
  contact-point credential add --id tech --rights send,mediate --out tech.credential
`;

const DIRECT_LIST_HELP = `Usage: contact-point credential list [flags]

Lists the contact point's direct-mode credentials: kind, name, rights and creation time.
Secrets are never stored, and hashes are never shown.

Flags:
${DIRECT_STATE_FLAG}
  --json                          print a JSON array
  -h, --help                      this help
`;

const DIRECT_REMOVE_HELP = `Usage: contact-point credential remove --id NAME [flags]

Deletes a direct-mode credential: its secret no longer connects, and a running contact point
closes the sessions that use it within seconds (REVOKED; an operator's ports and exposures
with them).

Flags:
  --id NAME
  --kind external                 the only kind here
${DIRECT_STATE_FLAG}
  -h, --help                      this help
`;

export const credentialCommands: Command[] = [
  { path: [...RELAY.words, 'add'], summary: 'create a credential and print its secret once', help: ADD_HELP, run: (argv) => add(RELAY, argv) },
  { path: [...RELAY.words, 'list'], summary: 'list credentials (never secrets)', help: LIST_HELP, run: (argv) => list(RELAY, argv) },
  { path: [...RELAY.words, 'remove'], summary: 'delete a credential', help: REMOVE_HELP, run: (argv) => remove(RELAY, argv) },
  { path: [...DIRECT.words, 'add'], summary: 'direct mode: create a credential for an external peer, print its secret once', help: DIRECT_ADD_HELP, run: (argv) => add(DIRECT, argv) },
  { path: [...DIRECT.words, 'list'], summary: "direct mode: list the contact point's credentials (never secrets)", help: DIRECT_LIST_HELP, run: (argv) => list(DIRECT, argv) },
  { path: [...DIRECT.words, 'remove'], summary: "direct mode: delete a credential (its sessions close)", help: DIRECT_REMOVE_HELP, run: (argv) => remove(DIRECT, argv) },
];
