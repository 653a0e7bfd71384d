/**
 * A token handed to this page in `#token=…`: kept in this tab's session storage under
 * `storageKey` (so a reload keeps working) and removed from the address bar, bookmarks and
 * screenshots; without one in the hash, the one this tab kept. Undefined when there is none.
 */
export function takeToken(win: Window, storageKey: string): string | undefined {
  const fromHash = new URLSearchParams(win.location.hash.replace(/^#/, '')).get('token') ?? undefined;
  let token = fromHash;
  try {
    if (fromHash) win.sessionStorage.setItem(storageKey, fromHash);
    else token = win.sessionStorage.getItem(storageKey) ?? undefined;
  } catch {
    // storage disabled: the hash is all we have
  }
  if (fromHash) win.history.replaceState(null, '', win.location.pathname + win.location.search);
  return token;
}
