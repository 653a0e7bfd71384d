import { RELAY_STATUS_PATH, type RelayStatusView } from '../../../core/admin/relay-contract';
import { takeToken } from '../api/take-token';

/** How often the dashboard asks the relay for its status (one request at a time). */
export const RELAY_POLL_MS = 2_000;
/** A status request with no answer this long counts as a failure. */
const REQUEST_TIMEOUT_MS = 5_000;
/** Storage key of the status token for this tab, so a reload keeps working after the hash is gone. */
const TOKEN_KEY = 'contact-point.relay-token';

export type PollState =
  | { readonly kind: 'connecting' }
  | { readonly kind: 'live'; readonly status: RelayStatusView; readonly at: number }
  | { readonly kind: 'lost'; readonly status: RelayStatusView | undefined; readonly at: number | undefined; readonly detail: string }
  | { readonly kind: 'unauthorized'; readonly detail: string };

/** The status token from `#token=…`, or the one this tab kept (take-token.ts). */
export function takeStatusToken(win: Window): string | undefined {
  return takeToken(win, TOKEN_KEY);
}

/**
 * Polls GET /api/status every RELAY_POLL_MS, the next request only after the last answer, so a
 * slow relay is never asked twice at once. Polling, not push: the relay builds a status only
 * when someone looks, keeps nothing per viewer, and a viewer that stops reading costs nothing.
 * A 401 stops it (the relay makes a new token each start); other failures keep the last status
 * on screen, marked lost, and retry. Returns the stop function.
 */
export function pollStatus(token: string, onState: (s: PollState) => void, fetcher: typeof fetch = fetch.bind(globalThis)): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last: { status: RelayStatusView; at: number } | undefined;
  const tick = async (): Promise<void> => {
    try {
      const res = await fetcher(RELAY_STATUS_PATH, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      if (stopped) return;
      if (res.status === 401) {
        onState({ kind: 'unauthorized', detail: 'The relay refused the token. It makes a new one each time it starts: open the dashboard URL it printed, or run `contact-point relay status`.' });
        return;
      }
      if (!res.ok) throw new Error(`the relay answered ${res.status}`);
      last = { status: (await res.json()) as RelayStatusView, at: Date.now() };
      if (stopped) return;
      onState({ kind: 'live', ...last });
    } catch (err: unknown) {
      if (stopped) return;
      onState({ kind: 'lost', status: last?.status, at: last?.at, detail: err instanceof Error ? err.message : String(err) });
    }
    if (!stopped) timer = setTimeout(() => void tick(), RELAY_POLL_MS);
  };
  void tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
