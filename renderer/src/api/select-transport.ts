import type { GuiApi } from './gui-api';
import { takeToken } from './take-token';
import { WsAdminClient } from './ws-admin-client';

/** Storage key of the admin token for this tab, so a reload keeps working after the hash is gone. */
const TOKEN_KEY = 'contact-point.admin-token';

export type Transport = { readonly api: GuiApi; readonly stop: () => void } | { readonly api: undefined; readonly problem: string };

/**
 * The one place that picks the transport: the desktop app's preload bridge when present,
 * otherwise the admin endpoint of this page's origin with the token from `#token=…`.
 * Nothing else in the GUI knows which it got.
 */
export function selectTransport(win: Window): Transport {
  if (win.contactPoint) return { api: win.contactPoint, stop: () => undefined };
  const token = takeToken(win, TOKEN_KEY);
  if (!token) {
    return {
      api: undefined,
      problem: 'This address has no admin token, so the contact point cannot let this page in.',
    };
  }
  const client = WsAdminClient.sameOrigin(win.location, token).start();
  return { api: client, stop: () => client.stop() };
}
