import type { AuditEntry, ContentCheckView, PeerView, PolicyView, PortPolicyView, RuleRefusalsView, RuleSetView, RulesView } from '../../../core/admin/contract.js';
import type { HostSettingsInput, HostSettingsResult } from '../../../core/admin/host-settings.js';
import { errorText } from '../api/admin-call-error';
import type { GuiApi } from '../api/gui-api';
import type { AppStore } from './app-store';
import { AUDIT_PAGE, loadAudit, setAuditLoading } from './audit-slice';
import { loadSnapshot } from './bind-api';
import { peerChanged, setPeerBusy } from './peers-slice';
import { setPortBusy, setPortPolicy } from './ports-slice';
import { setSeal } from './seal-slice';
import { setRules } from './rules-slice';
import { notify, setHostSettings, setPolicy } from './session-slice';
import { setReconnectBusy, tunnelStatus } from './tunnel-slice';

/** What the admin's buttons act on: the store and the admin API. */
export interface Ctx {
  readonly store: AppStore;
  readonly api: GuiApi;
}

type PeerVerb = 'approve' | 'reject' | 'revoke' | 'forget';
const PAST: Record<PeerVerb, string> = { approve: 'Approved', reject: 'Rejected', revoke: 'Revoked', forget: 'Forgot' };

/** Runs one peer decision per name; results go to the store at once (the event follows anyway). */
export async function decidePeers(ctx: Ctx, verb: PeerVerb, names: readonly string[]): Promise<void> {
  const { store, api } = ctx;
  setPeerBusy(store, names, true);
  const failures: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      try {
        const result: PeerView | { readonly name: string } = await api.call(`peers:${verb}`, { name });
        if ('state' in result) peerChanged(store, result);
      } catch (err: unknown) {
        failures.push(`${name}: ${errorText(err)}`);
      } finally {
        setPeerBusy(store, [name], false);
      }
    }),
  );
  const done = names.length - failures.length;
  if (done > 0) notify(store, 'ok', `${PAST[verb]} ${done === 1 && names.length === 1 ? names[0] : `${done} peer${done === 1 ? '' : 's'}`}`);
  if (failures.length > 0) notify(store, 'error', `Could not ${verb} ${failures.join('; ')}`);
}

export async function reconnectTunnel(ctx: Ctx): Promise<void> {
  setReconnectBusy(ctx.store, true);
  try {
    tunnelStatus(ctx.store, await ctx.api.call('tunnel:reconnect', {}));
  } catch (err: unknown) {
    notify(ctx.store, 'error', `Reconnect failed: ${errorText(err)}`);
  } finally {
    setReconnectBusy(ctx.store, false);
  }
}

/** Applies a policy; the contact point's refusal comes back as the error text. */
export async function savePolicy(ctx: Ctx, subnets: readonly string[], joinCode: string | undefined): Promise<{ ok: true; policy: PolicyView } | { ok: false; error: string }> {
  try {
    const policy = await ctx.api.call('policy:set', { subnets: [...subnets], ...(joinCode !== undefined ? { joinCode } : {}) });
    setPolicy(ctx.store, policy);
    notify(ctx.store, 'ok', 'Registration policy saved');
    return { ok: true, policy };
  } catch (err: unknown) {
    return { ok: false, error: errorText(err) };
  }
}

/** "Sealed payloads only": office-wide, and for the listed peers. Saved (and audited) before it resolves. */
export async function saveSealPolicy(ctx: Ctx, required: boolean, peers: readonly string[]): Promise<{ ok: true } | { ok: false; error: string }> {
  try {
    setSeal(ctx.store, await ctx.api.call('seal:policy', { required, peers: [...peers] }));
    notify(ctx.store, 'ok', 'Sealing policy saved');
    return { ok: true };
  } catch (err: unknown) {
    return { ok: false, error: errorText(err) };
  }
}

export async function saveHostSettings(ctx: Ctx, input: HostSettingsInput): Promise<HostSettingsResult | { ok: false; error: string }> {
  const settings = ctx.api.settings;
  if (!settings) return { ok: false, error: 'This host has no settings API: in headless mode the settings come from the command line.' };
  try {
    const r = await settings.save(input);
    if (r.ok) {
      setHostSettings(ctx.store, r.settings);
      notify(ctx.store, 'ok', 'Settings saved; the contact point restarted with them');
      // A new contact point: its peers, tunnel, policy and audit trail replace the old one's.
      loadSnapshot(ctx.store, await ctx.api.call('snapshot:get', {}));
      await loadAuditPage(ctx, false);
    }
    return r;
  } catch (err: unknown) {
    return { ok: false, error: errorText(err) };
  }
}

export async function closePort(ctx: Ctx, id: number): Promise<void> {
  setPortBusy(ctx.store, id, true);
  try {
    await ctx.api.call('ports:close', { id });
    notify(ctx.store, 'ok', `Closed port #${id}`);
  } catch (err: unknown) {
    notify(ctx.store, 'error', `Could not close port #${id}: ${errorText(err)}`);
  } finally {
    setPortBusy(ctx.store, id, false);
  }
}

export async function savePortPolicy(ctx: Ctx, targets: readonly string[], listen: readonly string[]): Promise<{ ok: true; policy: PortPolicyView } | { ok: false; error: string }> {
  try {
    const policy = await ctx.api.call('ports:policy', { targets: [...targets], listen: [...listen] });
    setPortPolicy(ctx.store, policy);
    notify(ctx.store, 'ok', 'Port policy saved');
    return { ok: true, policy };
  } catch (err: unknown) {
    return { ok: false, error: errorText(err) };
  }
}

/** The newest page of the audit trail (`older` false), or the page before the oldest loaded. */
export async function loadAuditPage(ctx: Ctx, older: boolean): Promise<void> {
  const oldest = ctx.store.getState().audit.at(-1);
  setAuditLoading(ctx.store, true);
  try {
    const page = await ctx.api.call('audit:list', { limit: AUDIT_PAGE, ...(older && oldest ? { beforeSeq: oldest.seq } : {}) });
    loadAudit(ctx.store, page.entries, page.more, older);
  } catch (err: unknown) {
    setAuditLoading(ctx.store, false);
    notify(ctx.store, 'error', `Could not load the audit trail: ${errorText(err)}`);
  }
}

/** One peer's audit entries, newest first (its page's state history). */
export async function peerAuditEntries(ctx: Ctx, name: string): Promise<readonly AuditEntry[]> {
  return (await ctx.api.call('audit:list', { target: name, limit: AUDIT_PAGE })).entries;
}

/** Sets a peer's access rules (or the office default's, without `peer`); the contact point's refusal comes back as the error text. */
export async function saveRules(ctx: Ctx, peer: string | undefined, set: RuleSetView): Promise<{ ok: true; rules: RulesView } | { ok: false; error: string }> {
  try {
    const rules = await ctx.api.call('rules:set', { ...(peer !== undefined ? { peer } : {}), ...set });
    setRules(ctx.store, rules);
    notify(ctx.store, 'ok', peer !== undefined ? `Access rules of ${peer} saved` : 'Office default access rules saved');
    return { ok: true, rules };
  } catch (err: unknown) {
    return { ok: false, error: errorText(err) };
  }
}

/** Sets the content check. */
export async function saveCheck(ctx: Ctx, check: ContentCheckView): Promise<{ ok: true; rules: RulesView } | { ok: false; error: string }> {
  try {
    const rules = await ctx.api.call('rules:check', { check });
    setRules(ctx.store, rules);
    notify(ctx.store, 'ok', 'Content check saved');
    return { ok: true, rules };
  } catch (err: unknown) {
    return { ok: false, error: errorText(err) };
  }
}

/** What the rules refused for `peer` since the contact point started. */
export function ruleRefusals(ctx: Ctx, peer: string): Promise<RuleRefusalsView> {
  return ctx.api.call('rules:refusals', { peer });
}
